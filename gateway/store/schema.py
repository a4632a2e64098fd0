"""The one schema for SQLite and PostgreSQL (SQLAlchemy Core). Changes go through an alembic
revision in `gateway/store/migrations/versions/`; this module mirrors the head revision."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

subscriber_policy = Table(
    "subscriber_policy",
    metadata,
    Column("subscriber", String(128), primary_key=True),
    Column("settings", Text, nullable=False),  # Policy.to_json() as JSON
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=False, server_default=""),
    Index("ix_subscriber_policy_updated_at", "updated_at"),
)

# one row per change, read by other replicas' change pollers (see CachedPolicyStore)
policy_changes = Table(
    "policy_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_policy_changes_at", "at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("subscriber", String(128), primary_key=True),
    Column("message_id", String(128), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("ingress", String(32), nullable=False, server_default=""),
    Column("sender", Text, nullable=False, server_default=""),
    Column("recipients", Text, nullable=False, server_default="[]"),  # JSON list
    Column("headers", Text, nullable=False, server_default="[]"),  # JSON [[name, value], ...]
    Column("body", LargeBinary, nullable=False),
    Column("protocol", Text, nullable=False, server_default="{}"),  # JSON
    Column("received_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("action", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON: Verdict.explanations()
    Column("status", String(16), nullable=False, server_default="held"),  # held | released
    Column("released_at", Float, nullable=True),
    Column("released_by", String(128), nullable=True),
    Index("ix_quarantine_subscriber_stored", "subscriber", "stored_at"),
    Index("ix_quarantine_stored_at", "stored_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber", String(128), nullable=False),
    Column("message_id", String(128), nullable=True),
    Column("label", String(16), nullable=False),  # fraud | not_fraud
    Column("consent", Boolean, nullable=False),
    Column("channel", String(16), nullable=True),
    Column("content", LargeBinary, nullable=True),  # kept only with consent
    Column("comment", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Index("ix_feedback_created_at", "created_at"),
    Index("ix_feedback_subscriber", "subscriber"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),  # "subscriber:<id>" or "key:<label>"
    Column("subscriber", String(128), nullable=False),
    Column("action", String(32), nullable=False),  # policy.put, policy.patch, quarantine.release, ...
    Column("changes", Text, nullable=False),  # JSON {field: {"old": .., "new": ..}}
    Index("ix_audit_at", "at"),
    Index("ix_audit_subscriber", "subscriber"),
)
