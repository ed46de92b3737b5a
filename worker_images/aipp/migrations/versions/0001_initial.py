"""Tenants, API keys (hash only) and tasks.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = "'awaiting_upload','queued','transcribing','summarizing','completed','failed'"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id          uuid PRIMARY KEY,
            name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
            created_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            id          uuid PRIMARY KEY,
            tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            key_hash    bytea NOT NULL UNIQUE,
            prefix      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        )
        """
    )
    op.execute("CREATE INDEX api_keys_tenant ON api_keys (tenant_id)")
    op.execute(
        f"""
        CREATE TABLE tasks (
            id               uuid PRIMARY KEY,
            tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            state            text NOT NULL CHECK (state IN ({STATES})),
            filename         text NOT NULL,
            object_key       text NOT NULL,
            content_type     text NOT NULL,
            size_bytes       bigint NOT NULL CHECK (size_bytes > 0),
            language         text,
            attempts         integer NOT NULL DEFAULT 0,
            error_code       text,
            error_message    text,
            transcript_key   text,
            result_key       text,
            summary          text,
            idempotency_key  text,
            request_hash     text,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now(),
            queued_at        timestamptz,
            transcribing_at  timestamptz,
            summarizing_at   timestamptz,
            completed_at     timestamptz,
            failed_at        timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant_id, idempotency_key)"
        " WHERE idempotency_key IS NOT NULL"
    )
    op.execute("CREATE INDEX tasks_tenant_page ON tasks (tenant_id, created_at DESC, id DESC)")
    op.execute(
        "CREATE INDEX tasks_tenant_state_page ON tasks (tenant_id, state, created_at DESC, id DESC)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE tasks")
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE tenants")
