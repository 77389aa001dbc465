"""The sync engine: plan, sample, push and report each stage; the only writer of the ledger."""
