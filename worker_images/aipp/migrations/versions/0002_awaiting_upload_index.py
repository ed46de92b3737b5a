"""A small partial index for the upload-expiry sweep (tasks still waiting for their upload).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS tasks_awaiting_upload ON tasks (updated_at)"
        " WHERE state = 'awaiting_upload'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS tasks_awaiting_upload")
