"""`tasks.summary_details`: which summarizer wrote a task's summary, and how.

The LLM step stored the summary twice: in `tasks.summary` and, with the provider's name and
details (model, prompt version, number of calls), in a result document in S3
(`results/<tenant>/<task>.json`). Nothing read that document back while `tasks.summary` was
set, and writing it was one S3 PUT per task. The step now keeps the provider's name and details
here, in the same UPDATE that completes the task, and writes no result document. Documents that
tasks completed before this migration have stay where they are, and go with their task.

Revision ID: 0008
Revises: 0007
Create Date: 2027-02-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE tasks ADD COLUMN summary_details jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE tasks DROP COLUMN summary_details")
