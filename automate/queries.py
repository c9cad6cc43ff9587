"""Named SQL statements shared by the Django side and the worker.

SQL lives here, as constants, never assembled with f-strings at run time. Placeholders are psycopg's
``%(name)s`` (``%(name)b`` for binary parameters on the worker's hot path). Every statement is exercised
against the migrated schema by the test suite. This module imports neither Django nor psycopg.
"""

from __future__ import annotations

NOTIFY_CHANNEL = "automate_outbox"

NOTIFY_OUTBOX = "NOTIFY automate_outbox"

# One statement writes the Event and its outbox job (the caller's transaction covers both). A repeated
# dedupe_key inserts nothing: ON CONFLICT waits for a concurrent inserter of the same key, so exactly one
# of N concurrent emitters wins and the others then read the winner's id.
EMIT_EVENT = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, dedupe_key, traceparent, tracestate, created_at)
    VALUES (%(id)s, %(type)s, %(payload)s::jsonb, %(source)s, %(dedupe_key)s, %(traceparent)s,
            %(tracestate)s, now())
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, available_at, attempts, max_attempts)
SELECT 'event', 'PENDING', 0, ev.id, now(), 0, %(max_attempts)s FROM ev
RETURNING event_id
"""

EVENT_ID_BY_DEDUPE_KEY = "SELECT id FROM automate_event WHERE dedupe_key = %(dedupe_key)s"

# ---------------------------------------------------------------------------------------------------
# Workflows (Django side and worker)

WORKFLOWS_CHANNEL = "automate_workflows"
NOTIFY_WORKFLOWS = "NOTIFY automate_workflows"

# The current (highest-numbered) version of every enabled workflow.
LIVE_VERSIONS = """
SELECT DISTINCT ON (v.workflow_id) v.id, w.slug, v.version_num, v.trigger_spec, v.steps
FROM automate_workflow_version v
JOIN automate_workflow w ON w.id = v.workflow_id
WHERE w.enabled
ORDER BY v.workflow_id, v.version_num DESC
"""

VERSION_BY_ID = """
SELECT v.id, w.slug, v.version_num, v.trigger_spec, v.steps
FROM automate_workflow_version v JOIN automate_workflow w ON w.id = v.workflow_id
WHERE v.id = %(id)s
"""

# run_workflow(): the event, the run and its job in one statement (the caller's transaction).
START_RUN = """
WITH ev AS (
    INSERT INTO automate_event (id, type, payload, source, traceparent, tracestate, created_at)
    VALUES (%(event_id)s, %(type)s, %(payload)s::jsonb, %(source)s, %(traceparent)s, %(tracestate)s, now())
    RETURNING id
), run AS (
    INSERT INTO automate_execution_run (id, workflow_version_id, event_id, status, trace_id, outputs, error,
                                        created_at)
    SELECT %(run_id)s, %(version_id)s, ev.id, 'PENDING', '', '{}'::jsonb, '', now() FROM ev
    RETURNING id, event_id
)
INSERT INTO automate_outbox_job (kind, status, priority, event_id, run_id, available_at, attempts, max_attempts)
SELECT 'run', 'PENDING', 0, run.event_id, run.id, now(), 0, %(max_attempts)s FROM run
RETURNING run_id
"""

# Django Tasks (automate.tasks.AutomateTaskBackend): a task is an outbox job of kind 'task' whose payload
# holds the function's dotted path, its arguments and, once it ran, its result (``payload.result``).
ENQUEUE_TASK = """
INSERT INTO automate_outbox_job (kind, status, priority, payload, available_at, attempts, max_attempts)
VALUES ('task', 'PENDING', %(priority)s, %(payload)s::jsonb, coalesce(%(run_after)s, now()), 0, %(max_attempts)s)
RETURNING id, created_at
"""

TASK_RESULT = """
SELECT id, status, payload, created_at, finished_at, attempts, worker_id, last_error
FROM automate_outbox_job WHERE id = %(id)s AND kind = 'task'
"""

# ---------------------------------------------------------------------------------------------------
# Worker: claims, leases, recovery.
#
# Ownership is a token: every claim bumps the job's ``claim_token`` (a fencing counter that never goes
# down, unlike ``attempts``), and every write, lease extension and release is fenced by the pair
# (job id, claim token) the claim returned. A worker whose lease expired can therefore never write over
# the job's next owner, even when that next owner is itself (a re-claim after a long outage).

# `id = ANY(ARRAY(SELECT ...))` makes the planner use primary-key lookups; `id IN (SELECT ... LIMIT n)`
# was seen scanning the whole job table. `has_runs` is read from the database, not guessed from a
# counter: it says whether this event job already recorded runs (a crash, a lost lease, a release at
# shutdown, a park), so the executor continues those runs instead of matching the event again. It is one
# probe of the (event, version) unique index per claimed job.
#
# The claimed jobs with their events, as every claim returns them (automate.aio.store parses this shape).
# One fragment for both claim statements, joined once at import: never assembled at run time.
_CLAIMED_ROWS = """\
    RETURNING j.id, j.kind, j.event_id, j.run_id, j.attempts, j.max_attempts, j.payload, j.claim_token
)
SELECT c.id, c.kind, c.event_id, c.run_id, c.attempts, c.max_attempts, c.payload, c.claim_token,
       e.type, e.payload, e.source, e.traceparent, e.tracestate,
       c.kind = 'event' AND EXISTS (SELECT 1 FROM automate_execution_run r WHERE r.event_id = c.event_id)
FROM claimed c LEFT JOIN automate_event e ON e.id = c.event_id
"""

CLAIM_JOBS = """
WITH claimed AS (
    UPDATE automate_outbox_job j
    SET status = 'CLAIMED', worker_id = %(worker_id)s, attempts = j.attempts + 1,
        claim_token = j.claim_token + 1,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM automate_outbox_job
        WHERE status = 'PENDING' AND available_at <= now()
        ORDER BY priority DESC, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
""" + _CLAIMED_ROWS

# WORKER_MODE "synchronous" (automate.synchronous): the jobs one commit wrote, claimed by the committing
# thread itself, by their event (emit_event, run_workflow) or their id (a task). Same columns as CLAIM_JOBS.
CLAIM_JOBS_FOR = """
WITH claimed AS (
    UPDATE automate_outbox_job j
    SET status = 'CLAIMED', worker_id = %(worker_id)s, attempts = j.attempts + 1,
        claim_token = j.claim_token + 1,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM automate_outbox_job
        WHERE status = 'PENDING' AND available_at <= now()
          AND (event_id = ANY(%(event_ids)s::uuid[]) OR id = ANY(%(job_ids)s::bigint[]))
        ORDER BY priority DESC, id
        FOR UPDATE SKIP LOCKED
    ))
""" + _CLAIMED_ROWS

# The fence: jobs given as parallel arrays of ids and claim tokens, still CLAIMED under that token.
EXTEND_LEASES = """
UPDATE automate_outbox_job j
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS f(id, token)
WHERE j.id = f.id AND j.claim_token = f.token AND j.status = 'CLAIMED'
RETURNING j.id, j.claim_token
"""

# Jobs whose lease expired (their worker died or stalled) become claimable again, or dead letters when
# they have used all their attempts; a dead-lettered job's open runs end FAILED with it.
RECOVER_EXPIRED = """
WITH recovered AS (
    UPDATE automate_outbox_job
    SET status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'PENDING' END,
        last_error = 'lease expired on worker ' || coalesce(worker_id, '?')
                     || CASE WHEN attempts >= max_attempts THEN ' (no attempts left)' ELSE '' END,
        finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
        worker_id = NULL, lease_expires_at = NULL
    WHERE status = 'CLAIMED' AND lease_expires_at < now()
    RETURNING id, status, kind, event_id, run_id, last_error
), dead_runs AS (
    UPDATE automate_execution_run r
    SET status = 'FAILED', error = d.last_error, finished_at = now()
    FROM recovered d
    WHERE d.status = 'FAILED' AND r.status IN ('PENDING', 'RUNNING')
      AND ((d.kind = 'run' AND r.id = d.run_id) OR (d.kind = 'event' AND r.event_id = d.event_id))
)
SELECT id, status FROM recovered
"""

# Give jobs back for immediate re-claim (graceful shutdown): the claim did not fail, so it is not counted.
RELEASE_JOBS = """
UPDATE automate_outbox_job j
SET status = 'PENDING', worker_id = NULL, lease_expires_at = NULL, available_at = now(),
    attempts = greatest(j.attempts - 1, 0)
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS f(id, token)
WHERE j.id = f.id AND j.claim_token = f.token AND j.status = 'CLAIMED'
"""

# --drain waits for every job, including those claimed by other (possibly dead) workers.
OUTBOX_HAS_WORK = """
SELECT EXISTS (SELECT 1 FROM automate_outbox_job WHERE status IN ('PENDING', 'CLAIMED'))
"""

# ---------------------------------------------------------------------------------------------------
# Worker: durable progress, written by the recorder in one transaction per flush (group commit).

# One statement writes a flush's runs, steps and finished jobs, fenced by the claims that still own
# their jobs. The fence needs each owned job row locked until COMMIT; instead of a separate SELECT ... FOR
# UPDATE (a lock is a write of the row: WAL and a dirty page per job), the finishing UPDATE itself is the
# lock for the jobs this flush finishes (the common case: one flush carries a one-step run's whole
# record), and only the jobs that go on (still running, or parked after this statement) are locked
# FOR UPDATE. ``owned`` is both; runs and steps are written only for claims in it. An UPDATE or lock
# that waits on a concurrent change (the reaper) re-reads the row, so a lost claim is never in ``owned``.
# Rows arrive as binary arrays (``%(x)b``), one per column (psycopg dumps binary arrays without quoting
# each element, the server unnests them without parsing JSON); ``outputs``/``output``/``result`` are JSON
# texts (orjson), cast per row.
# A run an operator CANCELLED (the admin) keeps that status: the worker's later RUNNING or SUCCEEDED row
# for it is not written over it. ``result`` (a Django task's outcome, automate.aio.tasks) is kept in the
# job's payload as ``payload.result``.
RECORD_FLUSH = """
WITH finished AS (
    UPDATE automate_outbox_job j
    SET status = f.status, last_error = f.error, finished_at = now(), lease_expires_at = NULL,
        payload = CASE WHEN f.result IS NULL THEN j.payload
                       ELSE jsonb_set(coalesce(j.payload, '{}'::jsonb), '{result}', f.result::jsonb) END
    FROM unnest(%(fin_id)b::bigint[], %(fin_token)b::bigint[], %(fin_status)b::text[], %(fin_error)b::text[],
                %(fin_result)b::text[]) AS f(id, token, status, error, result)
    WHERE j.id = f.id AND j.claim_token = f.token AND j.status = 'CLAIMED'
    RETURNING j.id, j.claim_token
), held AS (
    SELECT j.id, j.claim_token FROM automate_outbox_job j
    JOIN unnest(%(held_id)b::bigint[], %(held_token)b::bigint[]) AS f(id, token)
      ON j.id = f.id AND j.claim_token = f.token
    WHERE j.status = 'CLAIMED'
    ORDER BY j.id
    FOR UPDATE OF j
), owned AS (
    SELECT id, claim_token FROM finished UNION ALL SELECT id, claim_token FROM held
), runs AS (
    INSERT INTO automate_execution_run (id, workflow_version_id, event_id, status, trace_id, outputs, error,
                                        created_at, started_at, finished_at)
    SELECT t.id, t.version_id, t.event_id::uuid, t.status, t.trace_id, t.outputs::jsonb, t.error, now(), t.started_at,
           t.finished_at
    FROM unnest(%(run_id)b::uuid[], %(run_version)b::bigint[], %(run_event)b::text[], %(run_job)b::bigint[],
                %(run_token)b::bigint[], %(run_status)b::text[], %(run_trace)b::text[], %(run_outputs)b::text[],
                %(run_error)b::text[], %(run_started)b::timestamptz[], %(run_finished)b::timestamptz[])
         AS t(id, version_id, event_id, job_id, token, status, trace_id, outputs, error, started_at, finished_at)
    WHERE (t.job_id, t.token) IN (SELECT id, claim_token FROM owned)
    ON CONFLICT (id) DO UPDATE
    SET status = EXCLUDED.status, trace_id = EXCLUDED.trace_id, outputs = EXCLUDED.outputs,
        error = EXCLUDED.error, started_at = coalesce(automate_execution_run.started_at, EXCLUDED.started_at),
        finished_at = EXCLUDED.finished_at
    WHERE automate_execution_run.status <> 'CANCELLED'
), steps AS (
    INSERT INTO automate_step_run (run_id, step_id, attempt, status, started_at, finished_at, output, error)
    SELECT t.run_id, t.step_id, t.attempt, t.status, t.started_at, t.finished_at, t.output::jsonb, t.error
    FROM unnest(%(step_run)b::uuid[], %(step_id)b::text[], %(step_attempt)b::int[], %(step_job)b::bigint[],
                %(step_token)b::bigint[], %(step_status)b::text[], %(step_started)b::timestamptz[],
                %(step_finished)b::timestamptz[], %(step_output)b::text[], %(step_error)b::text[])
         AS t(run_id, step_id, attempt, job_id, token, status, started_at, finished_at, output, error)
    WHERE (t.job_id, t.token) IN (SELECT id, claim_token FROM owned)
    ON CONFLICT (run_id, step_id, attempt) DO UPDATE
    SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, output = EXCLUDED.output,
        error = EXCLUDED.error
)
SELECT id, claim_token FROM owned
"""

# A job that ends FAILED ends its runs that are still open (a runtime error before a run could record
# its own end, a job that ran out of attempts): no run stays RUNNING behind a dead letter. It runs after
# RECORD_FLUSH in the same transaction, so a run that recorded its own end keeps it, and only a job that
# statement ended FAILED under this claim's token counts (a job the fence kept out is not FAILED by us).
FAIL_OPEN_RUNS = """
UPDATE automate_execution_run r
SET status = 'FAILED', error = t.error, finished_at = now()
FROM unnest(%(id)s::bigint[], %(token)s::bigint[], %(error)s::text[]) AS t(id, token, error)
JOIN automate_outbox_job j ON j.id = t.id AND j.claim_token = t.token AND j.status = 'FAILED'
WHERE r.status IN ('PENDING', 'RUNNING')
  AND ((j.kind = 'run' AND r.id = j.run_id) OR (j.kind = 'event' AND r.event_id = j.event_id))
"""

# A job given back until later. A long retry wait of a step is parked uncounted (``counted`` false: the
# wait is the step's, whose attempts are counted in its StepRun rows); a failure of the runtime around a
# job (the database, a bug) is a counted retry, so it dead-letters once its attempts are used up instead
# of coming back for ever. ``payload.parked`` counts the parks, for operators.
PARK_JOBS = """
UPDATE automate_outbox_job j
SET status = 'PENDING', worker_id = NULL, lease_expires_at = NULL, last_error = t.error,
    available_at = now() + make_interval(secs => t.delay),
    attempts = CASE WHEN t.counted THEN j.attempts ELSE greatest(j.attempts - 1, 0) END,
    payload = jsonb_set(coalesce(j.payload, '{}'::jsonb), '{parked}',
                        to_jsonb(coalesce((j.payload ->> 'parked')::int, 0) + 1))
FROM unnest(%(id)s::bigint[], %(token)s::bigint[], %(delay)s::float8[], %(error)s::text[], %(counted)s::bool[])
     AS t(id, token, delay, error, counted)
WHERE j.id = t.id AND j.claim_token = t.token AND j.status = 'CLAIMED'
"""

# Audit entries of the worker (policy decisions, secrets used), in the group commit of their job.
INSERT_AUDIT = """
INSERT INTO automate_audit_log (actor, action, resource, details, created_at)
SELECT t.actor, t.action, t.resource, t.details, now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS t(actor text, action text, resource text, details jsonb)
"""

# Cancellation (automate.admin.operations.cancel_run): the runs CANCELLED among a worker's in-flight jobs,
# read by its lease loop; the executor stops those runs at the next step boundary. Two index probes per job
# (a run job's run by primary key, an event job's runs by the (event, version) unique index).
CANCELLED_RUNS_OF_JOBS = """
SELECT r.id FROM automate_outbox_job j JOIN automate_execution_run r ON r.id = j.run_id
WHERE j.id = ANY(%(job_ids)s::bigint[]) AND j.kind = 'run' AND r.status = 'CANCELLED'
UNION ALL
SELECT r.id FROM automate_outbox_job j JOIN automate_execution_run r ON r.event_id = j.event_id
WHERE j.id = ANY(%(job_ids)s::bigint[]) AND j.kind = 'event' AND r.status = 'CANCELLED'
"""

# Resuming: the runs already recorded for these events and the steps they completed.
RUNS_FOR_EVENTS = """
SELECT id, event_id, workflow_version_id, status, trace_id, error FROM automate_execution_run
WHERE event_id = ANY(%(event_ids)s)
"""

RUNS_BY_ID = """
SELECT id, event_id, workflow_version_id, status, trace_id, error FROM automate_execution_run
WHERE id = ANY(%(ids)s)
"""

STEP_PROGRESS = """
SELECT run_id, step_id, attempt, status, output FROM automate_step_run
WHERE run_id = ANY(%(run_ids)s)
ORDER BY run_id, step_id, attempt
"""

# ---------------------------------------------------------------------------------------------------
# Optional trigger mode (manage.py automate_notify_trigger): for installations whose outbox rows are also
# inserted by other services or raw SQL. The NOTIFY then runs inside each inserting transaction, which
# holds PostgreSQL's notification lock through the commit: see README, "The wake-up".

INSTALL_NOTIFY_TRIGGER = """
CREATE OR REPLACE FUNCTION automate_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('automate_outbox', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS automate_outbox_notify ON automate_outbox_job;
CREATE TRIGGER automate_outbox_notify AFTER INSERT ON automate_outbox_job
    FOR EACH STATEMENT EXECUTE FUNCTION automate_notify_outbox();
"""

REMOVE_NOTIFY_TRIGGER = """
DROP TRIGGER IF EXISTS automate_outbox_notify ON automate_outbox_job;
DROP FUNCTION IF EXISTS automate_notify_outbox();
"""

NOTIFY_TRIGGER_INSTALLED = """
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'automate_outbox_notify' AND NOT tgisinternal)
"""

# ---------------------------------------------------------------------------------------------------
# Signed webhooks (automate.webhooks.views): two copies of one delivery queue on this transaction-scoped
# lock, so the second sees the first's committed event and is refused as a duplicate.

WEBHOOK_DELIVERY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"

# ---------------------------------------------------------------------------------------------------
# Retention (manage.py automate_prune, automate.retention). The unit is an event with everything that
# hangs off it: its jobs, its runs and their step runs. It is deleted once all of it finished before the
# cutoff (jobs COMPLETED/FAILED, runs SUCCEEDED/FAILED/CANCELLED). Each batch is one short transaction:
# PRUNE_EVENT_BATCH locks up to %(limit)s candidate events (SKIP LOCKED: a row someone is inserting a job
# or run for is skipped; an insert that comes later waits for the batch and then fails its foreign key),
# the PRUNE_LOCK_* statements lock their jobs and runs and re-read their status after any wait, and
# PRUNE_DELETE_EVENTS deletes in foreign-key order (step runs, jobs, runs, events).

# A batch waits at most this long for a row lock; then it gives up (and is tried again).
PRUNE_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '2s'"

_PRUNE_EVENT_DONE = """
    e.created_at < %(cutoff)s
    AND NOT EXISTS (SELECT 1 FROM automate_outbox_job j WHERE j.event_id = e.id
                    AND (j.status NOT IN ('COMPLETED', 'FAILED') OR j.finished_at IS NULL
                         OR j.finished_at >= %(cutoff)s))
    AND NOT EXISTS (SELECT 1 FROM automate_execution_run r WHERE r.event_id = e.id
                    AND (r.status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED')
                         OR coalesce(r.finished_at, r.created_at) >= %(cutoff)s))
"""

PRUNE_EVENT_BATCH = (
    """
SELECT e.id FROM automate_event e
WHERE NOT (e.id = ANY(%(skip)s::uuid[])) AND"""
    + _PRUNE_EVENT_DONE
    + """
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED
"""
)

PRUNE_LOCK_JOBS = """
SELECT event_id, status IN ('COMPLETED', 'FAILED') AND finished_at < %(cutoff)s FROM automate_outbox_job
WHERE event_id = ANY(%(ids)s::uuid[])
ORDER BY id
FOR UPDATE
"""

PRUNE_LOCK_RUNS = """
SELECT event_id, status IN ('SUCCEEDED', 'FAILED', 'CANCELLED') AND coalesce(finished_at, created_at) < %(cutoff)s
FROM automate_execution_run
WHERE event_id = ANY(%(ids)s::uuid[])
ORDER BY id
FOR UPDATE
"""

PRUNE_DELETE_EVENTS = """
WITH steps AS (
    DELETE FROM automate_step_run s USING automate_execution_run r
    WHERE s.run_id = r.id AND r.event_id = ANY(%(ids)s::uuid[])
    RETURNING 1
), jobs AS (
    DELETE FROM automate_outbox_job WHERE event_id = ANY(%(ids)s::uuid[])
    RETURNING 1
), runs AS (
    DELETE FROM automate_execution_run WHERE event_id = ANY(%(ids)s::uuid[])
    RETURNING 1
), events AS (
    DELETE FROM automate_event WHERE id = ANY(%(ids)s::uuid[])
    RETURNING 1
)
SELECT (SELECT count(*) FROM steps), (SELECT count(*) FROM runs), (SELECT count(*) FROM jobs),
       (SELECT count(*) FROM events)
"""

# Jobs that belong to no event (Django tasks), finished before the cutoff.
PRUNE_DETACHED_JOBS = """
DELETE FROM automate_outbox_job WHERE id = ANY(ARRAY(
    SELECT id FROM automate_outbox_job
    WHERE event_id IS NULL AND run_id IS NULL AND status IN ('COMPLETED', 'FAILED')
      AND finished_at < %(cutoff)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
"""

PRUNE_AUDIT_BATCH = """
DELETE FROM automate_audit_log WHERE id = ANY(ARRAY(
    SELECT id FROM automate_audit_log WHERE created_at < %(cutoff)s ORDER BY id LIMIT %(limit)s
))
"""

# --dry-run: what the batches would delete now.
PRUNE_COUNT = (
    """
WITH ev AS (SELECT e.id FROM automate_event e WHERE"""
    + _PRUNE_EVENT_DONE
    + """)
SELECT
    (SELECT count(*) FROM automate_step_run s JOIN automate_execution_run r ON r.id = s.run_id
     WHERE r.event_id IN (SELECT id FROM ev)),
    (SELECT count(*) FROM automate_execution_run WHERE event_id IN (SELECT id FROM ev)),
    (SELECT count(*) FROM automate_outbox_job WHERE event_id IN (SELECT id FROM ev))
      + (SELECT count(*) FROM automate_outbox_job WHERE event_id IS NULL AND run_id IS NULL
         AND status IN ('COMPLETED', 'FAILED') AND finished_at < %(cutoff)s),
    (SELECT count(*) FROM ev)
"""
)

PRUNE_AUDIT_COUNT = "SELECT count(*) FROM automate_audit_log WHERE created_at < %(audit_cutoff)s"

# ---------------------------------------------------------------------------------------------------
# LLM daily budget (POLICY.llm_budget_daily), automate.connectors.llm.budget. Money is numeric(12,6) USD.
# One row per UTC day in automate_llm_spend (spent: settled calls; reserved: calls in flight), and one
# automate_llm_reservation row per call in flight. Every change of a spend row is one statement, so a row
# lock serialises concurrent callers and each re-checks the cap against the latest row (never a
# read-then-write). Lock order is always reservation rows, then the spend row: no deadlock. Expiry uses
# statement_timestamp(), not now(): a caller's own transaction must not freeze its clock.

# Releases the reservations of dead callers: past expires_at, and whose job is no longer CLAIMED under the
# token it had (its worker crashed and the lease was recovered, or the job ended). SKIP LOCKED: a
# reservation being settled or swept by someone else is theirs.
SWEEP_LLM_RESERVATIONS = """
WITH stale AS (
    SELECT r.id FROM automate_llm_reservation r
    WHERE r.expires_at < statement_timestamp()
      AND NOT EXISTS (
          SELECT 1 FROM automate_outbox_job j
          WHERE j.id = r.job_id AND j.claim_token = r.claim_token AND j.status = 'CLAIMED'
      )
    ORDER BY r.id
    LIMIT 1000
    FOR UPDATE OF r SKIP LOCKED
), gone AS (
    DELETE FROM automate_llm_reservation r USING stale WHERE r.id = stale.id
    RETURNING r.day, r.amount
), by_day AS (
    SELECT day, sum(amount) AS amount, count(*) AS n FROM gone GROUP BY day
)
UPDATE automate_llm_spend s SET reserved = s.reserved - d.amount
FROM by_day d WHERE s.day = d.day
RETURNING s.day, d.n, d.amount
"""

# Reserves an upper bound of a call's cost, if it fits under the cap: creates the day's row or adds to it
# in one statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE spent + reserved + amount <= cap), and
# records the reservation with the job (and claim token) that runs the event, found by the event id. No
# row returned: the call does not fit.
RESERVE_LLM_BUDGET = """
WITH job AS (
    SELECT id, claim_token FROM automate_outbox_job
    WHERE event_id = %(event_id)s::uuid AND status = 'CLAIMED'
    ORDER BY claim_token DESC
    LIMIT 1
), spend AS (
    INSERT INTO automate_llm_spend AS s (day, spent, reserved)
    SELECT %(day)s::date, 0, %(amount)s::numeric WHERE %(amount)s::numeric <= %(cap)s::numeric
    ON CONFLICT (day) DO UPDATE SET reserved = s.reserved + EXCLUDED.reserved
    WHERE s.spent + s.reserved + EXCLUDED.reserved <= %(cap)s::numeric
    RETURNING s.day
)
INSERT INTO automate_llm_reservation (day, amount, job_id, claim_token, expires_at, created_at)
SELECT spend.day, %(amount)s::numeric, (SELECT id FROM job), (SELECT claim_token FROM job),
       statement_timestamp() + make_interval(secs => %(hold_seconds)s), now()
FROM spend
RETURNING id
"""

# Settles (actual = the cost from the response's usage) or releases (actual = 0) a reservation: reserved
# -= its amount if it was still held (the sweep may have released it), spent += actual, in one statement.
# Returns whether the reservation was still held.
SETTLE_LLM_RESERVATION = """
WITH gone AS (
    DELETE FROM automate_llm_reservation WHERE id = %(id)s RETURNING amount
)
UPDATE automate_llm_spend
SET reserved = reserved - coalesce((SELECT amount FROM gone), 0), spent = spent + %(actual)s::numeric
WHERE day = %(day)s::date
RETURNING EXISTS (SELECT 1 FROM gone)
"""

LLM_SPEND_FOR_DAY = "SELECT spent, reserved FROM automate_llm_spend WHERE day = %(day)s::date"

# ---------------------------------------------------------------------------------------------------
# Metrics: read at scrape time (automate.observability.metrics.OutboxCollector, cached a few seconds), so
# every process reports the same figures. Only unfinished jobs are read (the status index), never the
# history: due and scheduled PENDING jobs, CLAIMED jobs, and how long the oldest due job has waited.

METRICS_OUTBOX = """
SELECT count(*) FILTER (WHERE status = 'PENDING' AND available_at <= now()),
       count(*) FILTER (WHERE status = 'PENDING' AND available_at > now()),
       count(*) FILTER (WHERE status = 'CLAIMED'),
       coalesce(extract(epoch FROM now() - min(available_at)
                FILTER (WHERE status = 'PENDING' AND available_at <= now())), 0)::float8
FROM automate_outbox_job
WHERE status IN ('PENDING', 'CLAIMED')
"""
