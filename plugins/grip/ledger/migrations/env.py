"""Alembic environment of the ledger: runs on the connection ``grip.ledger.upgrade`` hands in."""

from __future__ import annotations

from alembic import context

from grip.ledger.models import VERSION_TABLE, Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI
    raise RuntimeError("apply ledger migrations with grip.ledger.upgrade(engine_or_url)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
