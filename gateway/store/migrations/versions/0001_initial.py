"""Initial schema: policies, policy change log, quarantine, feedback, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "subscriber_policy" in existing:
        # a data dir from before migrations (the first SqlitePolicyStore): keep its rows
        with op.batch_alter_table("subscriber_policy") as batch:
            batch.add_column(sa.Column("updated_by", sa.String(128), nullable=False,
                                       server_default=""))
            batch.create_index("ix_subscriber_policy_updated_at", ["updated_at"])
    else:
        op.create_table(
            "subscriber_policy",
            sa.Column("subscriber", sa.String(128), primary_key=True),
            sa.Column("settings", sa.Text, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("updated_by", sa.String(128), nullable=False, server_default=""),
        )
        op.create_index("ix_subscriber_policy_updated_at", "subscriber_policy", ["updated_at"])
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_policy_changes_at", "policy_changes", ["at"])
    op.create_table(
        "quarantine",
        sa.Column("subscriber", sa.String(128), primary_key=True),
        sa.Column("message_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("ingress", sa.String(32), nullable=False, server_default=""),
        sa.Column("sender", sa.Text, nullable=False, server_default=""),
        sa.Column("recipients", sa.Text, nullable=False, server_default="[]"),
        sa.Column("headers", sa.Text, nullable=False, server_default="[]"),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("protocol", sa.Text, nullable=False, server_default="{}"),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("stored_at", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="held"),
        sa.Column("released_at", sa.Float, nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_quarantine_subscriber_stored", "quarantine", ["subscriber", "stored_at"])
    op.create_index("ix_quarantine_stored_at", "quarantine", ["stored_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscriber", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("consent", sa.Boolean, nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
    )
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_index("ix_feedback_subscriber", "feedback", ["subscriber"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("subscriber", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_subscriber", "audit", ["subscriber"])


def downgrade() -> None:
    for table in ("audit", "feedback", "quarantine", "policy_changes", "subscriber_policy"):
        op.drop_table(table)
