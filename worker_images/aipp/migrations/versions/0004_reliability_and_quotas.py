"""The accepted object version, retryable failures, per-tenant quotas and their indexes.

- `tasks.object_version`: the S3 version the upload check accepted; the worker reads exactly
  that version, so a later PUT over the same key cannot swap the audio.
- `tasks.retryable`: a failure that a retry could fix (receives or the job deadline exhausted);
  only those may be requeued (`failed → queued`, `admin requeue`).
- `tenants.quota_*`: per-tenant overrides of AIPP_QUOTA_TASKS_IN_FLIGHT / AIPP_QUOTA_TASKS_PER_DAY.
- `tenant_daily_usage`: tasks created per tenant and UTC day, counted in the creating
  transaction, so the daily quota is one row read instead of a count over the day's tasks.
- Two partial indexes: a tenant's open tasks (the in-flight quota) and open tasks by age (the
  reconciler).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-11
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = "state IN ('awaiting_upload','queued','transcribing','summarizing')"


def upgrade() -> None:
    op.execute("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS object_version text")
    op.execute(
        "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS retryable boolean NOT NULL DEFAULT false"
    )
    op.execute(
        "ALTER TABLE tenants ADD COLUMN IF NOT EXISTS quota_tasks_in_flight integer"
        " CHECK (quota_tasks_in_flight > 0)"
    )
    op.execute(
        "ALTER TABLE tenants ADD COLUMN IF NOT EXISTS quota_tasks_per_day integer"
        " CHECK (quota_tasks_per_day > 0)"
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS tenant_daily_usage (
            tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            day        date NOT NULL,
            tasks      integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, day)
        )
        """
    )
    op.execute(f"CREATE INDEX IF NOT EXISTS tasks_open_by_tenant ON tasks (tenant_id) WHERE {OPEN}")
    op.execute(
        "CREATE INDEX IF NOT EXISTS tasks_in_progress_by_age ON tasks (updated_at)"
        " WHERE state IN ('queued','transcribing','summarizing')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS tasks_in_progress_by_age")
    op.execute("DROP INDEX IF EXISTS tasks_open_by_tenant")
    op.execute("DROP TABLE IF EXISTS tenant_daily_usage")
    op.execute("ALTER TABLE tenants DROP COLUMN IF EXISTS quota_tasks_per_day")
    op.execute("ALTER TABLE tenants DROP COLUMN IF EXISTS quota_tasks_in_flight")
    op.execute("ALTER TABLE tasks DROP COLUMN IF EXISTS retryable")
    op.execute("ALTER TABLE tasks DROP COLUMN IF EXISTS object_version")
