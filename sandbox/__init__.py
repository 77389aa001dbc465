"""Local stand-in for the Grip registration API, for tests, benchmarks and demos."""
