"""`create_task(...)`: the quota check and the insert of a new task in one statement.

The API creates a task under its tenant's quotas: take the tenant's transaction lock, look for
the idempotency key, read the tenant's limits, count its open tasks, count today's usage and
insert. Done statement by statement from the API that was eight round trips to the database
(BEGIN, five statements, COMMIT) for each task; as one function it is one. It runs with the
caller's rights (SECURITY INVOKER) and in the caller's transaction, so nothing of a refused
create is written. Each statement inside sees the rows committed before it (READ COMMITTED),
which is why the lock comes first: creates of one tenant are serialized, creates of different
tenants are not.

Answers one row: `outcome` (`created`, `existing`, `tasks_in_flight`, `tasks_per_day`), the
limit and usage of a refusing quota, and the task (NULL when refused).

Revision ID: 0005
Revises: 0004
Create Date: 2027-01-08
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION create_task(
            p_id uuid, p_tenant_id uuid, p_state text, p_filename text, p_object_key text,
            p_content_type text, p_size_bytes bigint, p_language text,
            p_idempotency_key text, p_request_hash text,
            p_in_flight integer, p_per_day integer
        ) RETURNS TABLE (outcome text, quota_limit integer, quota_used bigint, task tasks)
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
        DECLARE
            found_task tasks;
            in_flight_limit integer := p_in_flight;
            per_day_limit integer := p_per_day;
            open_tasks bigint;
            used integer;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant_id::text, 7));
            IF p_idempotency_key IS NOT NULL THEN
                SELECT * INTO found_task FROM tasks t
                 WHERE t.tenant_id = p_tenant_id AND t.idempotency_key = p_idempotency_key;
                IF FOUND THEN
                    RETURN QUERY SELECT 'existing'::text, NULL::integer, NULL::bigint, found_task;
                    RETURN;
                END IF;
            END IF;
            SELECT coalesce(tn.quota_tasks_in_flight, p_in_flight),
                   coalesce(tn.quota_tasks_per_day, p_per_day)
              INTO in_flight_limit, per_day_limit
              FROM tenants tn WHERE tn.id = p_tenant_id;
            in_flight_limit := coalesce(in_flight_limit, p_in_flight);
            per_day_limit := coalesce(per_day_limit, p_per_day);
            SELECT count(*) INTO open_tasks FROM tasks t
             WHERE t.tenant_id = p_tenant_id
               AND t.state IN ('awaiting_upload', 'queued', 'transcribing', 'summarizing');
            IF open_tasks >= in_flight_limit THEN
                RETURN QUERY
                    SELECT 'tasks_in_flight'::text, in_flight_limit, open_tasks, NULL::tasks;
                RETURN;
            END IF;
            SELECT u.tasks INTO used FROM tenant_daily_usage u
             WHERE u.tenant_id = p_tenant_id AND u.day = (now() AT TIME ZONE 'utc')::date;
            IF coalesce(used, 0) >= per_day_limit THEN
                RETURN QUERY SELECT 'tasks_per_day'::text, per_day_limit, used::bigint, NULL::tasks;
                RETURN;
            END IF;
            INSERT INTO tenant_daily_usage AS u (tenant_id, day, tasks)
            VALUES (p_tenant_id, (now() AT TIME ZONE 'utc')::date, 1)
            ON CONFLICT (tenant_id, day) DO UPDATE SET tasks = u.tasks + 1;
            INSERT INTO tasks (id, tenant_id, state, filename, object_key, content_type,
                               size_bytes, language, idempotency_key, request_hash, queued_at)
            VALUES (p_id, p_tenant_id, p_state, p_filename, p_object_key, p_content_type,
                    p_size_bytes, p_language, p_idempotency_key, p_request_hash,
                    CASE WHEN p_state = 'queued' THEN now() END)
            RETURNING * INTO found_task;
            RETURN QUERY SELECT 'created'::text, NULL::integer, NULL::bigint, found_task;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS create_task(uuid, uuid, text, text, text, text, bigint, text,"
        " text, text, integer, integer)"
    )
