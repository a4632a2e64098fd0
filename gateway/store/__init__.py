"""Storage: policy, audit and quarantine (SQLite embedded default, PostgreSQL at scale)."""
