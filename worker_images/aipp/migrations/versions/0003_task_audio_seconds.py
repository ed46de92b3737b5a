"""The measured audio length of each task, and the index the capacity planner reads.

`audio_seconds` is written by the STT step in the same state change that records the transcript
(NULL until then, and for providers that cannot tell). `python -m capacity plan --from-usage`
reads `queued_at` and `audio_seconds` of recent tasks from the index alone; it is built
concurrently so that a large table keeps taking writes meanwhile.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NaN sorts above every number in PostgreSQL, so the upper bound keeps NaN and inf out too.
    op.execute(
        "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS audio_seconds double precision"
        " CONSTRAINT tasks_audio_seconds_valid"
        " CHECK (audio_seconds >= 0 AND audio_seconds < 'Infinity')"
    )
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_queued_at"
            " ON tasks (queued_at) INCLUDE (audio_seconds) WHERE queued_at IS NOT NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS tasks_queued_at")
    op.execute("ALTER TABLE tasks DROP COLUMN IF EXISTS audio_seconds")
