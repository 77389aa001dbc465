"""The subcommands of ``python -m grip``, one module each with ``register(subparsers)``."""
