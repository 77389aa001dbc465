"""Alembic migrations of the ledger; applied by ``grip.ledger.upgrade``."""
