"""`create_task(...)` does less per create; the open-task index keeps one entry per task version.

The function (0005) keeps its signature, its result and its rules: creates of one tenant take
the tenant's transaction lock first, so each statement after it sees every create committed
before; an idempotent replay answers `existing`, is never refused and never counted; a refused
create writes nothing. What changed:

- The open-task count stops at the in-flight limit (`LIMIT`): a refusal, or a tenant above its
  limit (a lowered override, requeued tasks), counts at most `limit` of its tasks. The
  refusal's `quota_used` is then the limit ("at least" that many are in flight).
- Today's usage is checked and raised by one UPDATE (`... WHERE tasks < limit`): the row is
  read once and written only when the create goes ahead, where the separate read and the upsert
  read it twice and locked it before writing it. Only a tenant's first create of a UTC day
  inserts the row; only a refusal by the daily limit reads it again (for `quota_used`). The
  result is handed back with RETURN NEXT instead of one more query.
- `tasks_open_by_tenant` stops deduplicating its entries. Every update of an open task (a state
  change, a renewed upload URL) adds an entry for the new row version under the same tenant_id.
  In a deduplicated posting list the dead versions stay, and every count looks each of them up
  in the heap until VACUUM removes them. As separate entries, the first scan that finds one
  dead to every transaction marks it, and later counts skip it without touching the heap.
  Entries written before this migration stay deduplicated until their tasks close and VACUUM
  clears them; nothing is rebuilt.

The index stays: `tasks_tenant_state_page` could answer the same count, but only with four
range scans that also read the tenant's dead entries of every state, and with a plan that may
filter on the state instead of seeking to it, over all of a tenant's tasks.

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-15
"""

from importlib import import_module

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CREATE_TASK = """
        CREATE OR REPLACE FUNCTION create_task(
            p_id uuid, p_tenant_id uuid, p_state text, p_filename text, p_object_key text,
            p_content_type text, p_size_bytes bigint, p_language text,
            p_idempotency_key text, p_request_hash text,
            p_in_flight integer, p_per_day integer
        ) RETURNS TABLE (outcome text, quota_limit integer, quota_used bigint, task tasks)
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
        DECLARE
            in_flight_limit integer;
            per_day_limit integer;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant_id::text, 7));
            IF p_idempotency_key IS NOT NULL THEN
                SELECT * INTO task FROM tasks t
                 WHERE t.tenant_id = p_tenant_id AND t.idempotency_key = p_idempotency_key;
                IF FOUND THEN
                    outcome := 'existing';
                    RETURN NEXT;
                    RETURN;
                END IF;
            END IF;
            SELECT coalesce(tn.quota_tasks_in_flight, p_in_flight),
                   coalesce(tn.quota_tasks_per_day, p_per_day)
              INTO in_flight_limit, per_day_limit
              FROM tenants tn WHERE tn.id = p_tenant_id;
            in_flight_limit := coalesce(in_flight_limit, p_in_flight);
            per_day_limit := coalesce(per_day_limit, p_per_day);
            SELECT count(*) INTO quota_used FROM (
                SELECT FROM tasks t
                 WHERE t.tenant_id = p_tenant_id
                   AND t.state IN ('awaiting_upload', 'queued', 'transcribing', 'summarizing')
                 LIMIT greatest(in_flight_limit, 0)) AS open_task;
            IF quota_used >= in_flight_limit THEN
                outcome := 'tasks_in_flight';
                quota_limit := in_flight_limit;
                RETURN NEXT;
                RETURN;
            END IF;
            -- Count today's create only while under the daily limit; no row: the first of the day.
            UPDATE tenant_daily_usage u SET tasks = u.tasks + 1
             WHERE u.tenant_id = p_tenant_id AND u.day = (now() AT TIME ZONE 'utc')::date
               AND (u.tasks >= per_day_limit) IS NOT TRUE;
            IF NOT FOUND THEN
                INSERT INTO tenant_daily_usage (tenant_id, day, tasks)
                SELECT p_tenant_id, (now() AT TIME ZONE 'utc')::date, 1
                 WHERE (per_day_limit <= 0) IS NOT TRUE
                ON CONFLICT (tenant_id, day) DO NOTHING;
                IF NOT FOUND THEN
                    SELECT u.tasks INTO quota_used FROM tenant_daily_usage u
                     WHERE u.tenant_id = p_tenant_id AND u.day = (now() AT TIME ZONE 'utc')::date;
                    outcome := 'tasks_per_day';
                    quota_limit := per_day_limit;
                    RETURN NEXT;
                    RETURN;
                END IF;
            END IF;
            INSERT INTO tasks (id, tenant_id, state, filename, object_key, content_type,
                               size_bytes, language, idempotency_key, request_hash, queued_at)
            VALUES (p_id, p_tenant_id, p_state, p_filename, p_object_key, p_content_type,
                    p_size_bytes, p_language, p_idempotency_key, p_request_hash,
                    CASE WHEN p_state = 'queued' THEN now() END)
            RETURNING * INTO task;
            outcome := 'created';
            quota_used := NULL;
            RETURN NEXT;
        END
        $$
        """


def upgrade() -> None:
    op.execute(CREATE_TASK)
    op.execute("ALTER INDEX tasks_open_by_tenant SET (deduplicate_items = off)")


def downgrade() -> None:
    op.execute("ALTER INDEX tasks_open_by_tenant RESET (deduplicate_items)")
    # 0005's upgrade is what puts its function back (CREATE OR REPLACE).
    import_module("aipp.migrations.versions.0005_create_task_function").upgrade()
