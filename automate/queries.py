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
