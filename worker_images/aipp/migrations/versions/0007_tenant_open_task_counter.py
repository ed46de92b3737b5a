"""Each tenant's open tasks are counted as they open and close, not at every create.

`tenants.tasks_open` holds how many of the tenant's tasks are open (neither `completed` nor
`failed`). Triggers on `tasks` keep it: an insert of an open task adds one, a delete of one
takes one away, and an update adds or takes away one only when it moves a task between open and
closed (or to another tenant). The WHEN clauses keep every other update (a step of the pipeline,
a renewed upload URL) from calling the trigger function at all.

`create_task(...)` keeps its signature, its result and its rules, and now reads the count from
the tenant's row instead of counting the tenant's open tasks (0006 counted up to the limit, so a
tenant with a high limit and a backlog paid for each open task at every create). It locks that
row (`FOR NO KEY UPDATE`) where it took the tenant's advisory lock: creates of one tenant still
wait for each other, every statement after the lock sees every create committed before, and
the insert's own trigger then updates a row the transaction already holds. A refused create
still writes nothing. The count is exact, so a refusal's `quota_used` is the number of open
tasks (0006 stopped counting at the limit).

`tasks_open_by_tenant` is dropped: only the count read it, and every insert and every state
change of an open task paid for an entry in it.

The upgrade creates the triggers before it fills the column: creating them locks `tasks`
against writes until the migration commits, so no task opens or closes between the count and
the triggers.

Revision ID: 0007
Revises: 0006
Create Date: 2027-02-01
"""

from importlib import import_module

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COUNT_OPEN_TASKS = """
        CREATE FUNCTION count_open_tasks() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
        BEGIN
            IF TG_OP <> 'INSERT' AND OLD.state NOT IN ('completed', 'failed') THEN
                UPDATE tenants SET tasks_open = tasks_open - 1 WHERE id = OLD.tenant_id;
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.state NOT IN ('completed', 'failed') THEN
                UPDATE tenants SET tasks_open = tasks_open + 1 WHERE id = NEW.tenant_id;
            END IF;
            RETURN NULL;
        END
        $$
        """

TRIGGERS = {
    "tasks_count_opened": "AFTER INSERT ON tasks FOR EACH ROW"
    " WHEN (NEW.state NOT IN ('completed', 'failed'))",
    "tasks_count_moved": "AFTER UPDATE OF state, tenant_id ON tasks FOR EACH ROW"
    " WHEN ((OLD.state IN ('completed', 'failed')) <> (NEW.state IN ('completed', 'failed'))"
    " OR (OLD.tenant_id <> NEW.tenant_id AND NEW.state NOT IN ('completed', 'failed')))",
    "tasks_count_deleted": "AFTER DELETE ON tasks FOR EACH ROW"
    " WHEN (OLD.state NOT IN ('completed', 'failed'))",
}

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
            open_tasks integer;
        BEGIN
            SELECT coalesce(tn.quota_tasks_in_flight, p_in_flight),
                   coalesce(tn.quota_tasks_per_day, p_per_day), tn.tasks_open
              INTO in_flight_limit, per_day_limit, open_tasks
              FROM tenants tn WHERE tn.id = p_tenant_id
               FOR NO KEY UPDATE;
            IF p_idempotency_key IS NOT NULL THEN
                SELECT * INTO task FROM tasks t
                 WHERE t.tenant_id = p_tenant_id AND t.idempotency_key = p_idempotency_key;
                IF FOUND THEN
                    outcome := 'existing';
                    RETURN NEXT;
                    RETURN;
                END IF;
            END IF;
            IF open_tasks >= in_flight_limit THEN
                outcome := 'tasks_in_flight';
                quota_limit := in_flight_limit;
                quota_used := open_tasks;
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
    op.execute("ALTER TABLE tenants ADD COLUMN tasks_open integer NOT NULL DEFAULT 0")
    op.execute(COUNT_OPEN_TASKS)
    for name, when in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION count_open_tasks()")
    op.execute(
        """
        UPDATE tenants tn SET tasks_open = open.tasks
          FROM (SELECT tenant_id, count(*) AS tasks FROM tasks
                 WHERE state NOT IN ('completed', 'failed') GROUP BY tenant_id) AS open
         WHERE tn.id = open.tenant_id
        """
    )
    op.execute(CREATE_TASK)
    op.execute("DROP INDEX tasks_open_by_tenant")


def downgrade() -> None:
    op.execute(
        "CREATE INDEX tasks_open_by_tenant ON tasks (tenant_id) WITH (deduplicate_items = off)"
        " WHERE state IN ('awaiting_upload', 'queued', 'transcribing', 'summarizing')"
    )
    # 0006's function text is what 0006's upgrade puts back (CREATE OR REPLACE).
    op.execute(import_module("aipp.migrations.versions.0006_create_task_cheaper").CREATE_TASK)
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON tasks")
    op.execute("DROP FUNCTION count_open_tasks()")
    op.execute("ALTER TABLE tenants DROP COLUMN tasks_open")
