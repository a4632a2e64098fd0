"""Alembic migrations of the store schema (`gateway.store.db.migrate` runs them)."""
