"""``POLICY.llm_budget_daily``: a hard cap on LLM spend per UTC day, across every worker and process.

    reservation = reserve(bound, event_id=...)   # BudgetExceeded if spent + reserved + bound > cap
    ... the call ...
    settle(reservation, actual)                  # reserved -= bound, spent += actual
    release(reservation)                         # the call failed unbilled: reserved -= bound

Each change is one SQL statement of ``automate.queries`` (``RESERVE_LLM_BUDGET``, ...), atomic under
concurrency: the day's spend row is locked by the statement that changes it and the cap is checked against
its latest version, so N concurrent callers can never reserve more than the cap together.

A reservation whose caller died (a SIGKILLed worker) is released by the sweep that runs before every
reservation, in its transaction (``SWEEP_LLM_RESERVATIONS``): once it is past ``expires_at`` (the call's
timeout and a minute) and its job is no longer CLAIMED under the claim token it had, i.e. the dead
worker's lease was recovered (or the job ended).

The functions are sync (Django's connection); ``areserve``/``asettle``/``arelease`` run them in a pool
thread for the worker's event loop. ``spend_today()`` is for metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from automate import queries
from automate.connectors.base import PermanentStepError

__all__ = [
    "BUDGET_SETTING",
    "BudgetExceeded",
    "Reservation",
    "arelease",
    "areserve",
    "asettle",
    "release",
    "release_stale",
    "reserve",
    "settle",
    "spend_on",
    "spend_today",
    "today",
]

BUDGET_SETTING = "DJANGO_AUTOMATE.POLICY.llm_budget_daily"
HOLD_MARGIN_SECONDS = 60.0


class BudgetExceeded(PermanentStepError):
    """A call whose cost bound does not fit in what is left of today's budget. Not retried."""

    def __init__(self, *, day: date, cap: Decimal, spent: Decimal, reserved: Decimal, bound: Decimal) -> None:
        super().__init__(
            f"LLM budget exceeded: this call may cost up to {bound} USD, and {BUDGET_SETTING} is {cap} USD "
            f"for {day.isoformat()} (UTC), of which {spent} USD is spent and {reserved} USD reserved by calls "
            f"in flight ({spent + reserved} USD)"
        )
        self.day, self.cap, self.spent, self.reserved, self.bound = day, cap, spent, reserved, bound

    def details(self) -> dict[str, Any]:
        """For the audit entry (JSON: money as strings, exact)."""
        return {
            "policy": "POLICY.llm_budget_daily", "day": self.day.isoformat(), "cap_usd": str(self.cap),
            "spent_usd": str(self.spent), "reserved_usd": str(self.reserved), "bound_usd": str(self.bound),
        }


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
    day: date
    amount: Decimal


def today() -> date:
    return datetime.now(UTC).date()


def _cap() -> Decimal:
    from automate.conf import get_settings

    return Decimal(str(get_settings().POLICY.llm_budget_daily))


def _hold_seconds() -> float:
    from automate.conf import get_settings

    return get_settings().LLM.timeout_seconds + HOLD_MARGIN_SECONDS


def spend_on(day: date, using: str = DEFAULT_DB_ALIAS) -> tuple[Decimal, Decimal]:
    """``(spent, reserved)`` in USD on ``day`` (zeros for a day without calls)."""
    with connections[using].cursor() as cur:
        cur.execute(queries.LLM_SPEND_FOR_DAY, {"day": day})
        row = cur.fetchone()
    return (Decimal(0), Decimal(0)) if row is None else (Decimal(row[0]), Decimal(row[1]))


def spend_today(using: str = DEFAULT_DB_ALIAS) -> tuple[float, float]:
    """``(spent, reserved)`` USD of the current UTC day, as floats for a metrics exporter."""
    spent, reserved = spend_on(today(), using)
    return float(spent), float(reserved)


def release_stale(using: str = DEFAULT_DB_ALIAS) -> int:
    """Release the reservations of dead callers (see the module docstring); return how many."""
    with connections[using].cursor() as cur:
        cur.execute(queries.SWEEP_LLM_RESERVATIONS)
        return sum(int(row[1]) for row in cur.fetchall())


def reserve(
    amount: Decimal,
    *,
    event_id: str | None = None,
    cap: Decimal | None = None,
    hold_seconds: float | None = None,
    day: date | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> Reservation:
    """Reserve ``amount`` USD of ``day``'s budget (today, UTC) or raise :class:`BudgetExceeded`.

    ``event_id``: the event whose job runs the call (the reservation remembers that job's id and claim
    token for the sweep). ``cap`` defaults to ``POLICY.llm_budget_daily``; ``hold_seconds`` (how long
    before the reservation may be swept once its job is gone) to ``LLM.timeout_seconds`` + 60.
    """
    if amount < 0:
        raise ValueError(f"a reservation is a non-negative amount, not {amount}")
    day = day or today()
    cap = _cap() if cap is None else cap
    hold = _hold_seconds() if hold_seconds is None else hold_seconds
    params = {"event_id": event_id, "day": day, "amount": amount, "cap": cap, "hold_seconds": hold}
    with transaction.atomic(using=using), connections[using].cursor() as cur:
        cur.execute(queries.SWEEP_LLM_RESERVATIONS)
        cur.execute(queries.RESERVE_LLM_BUDGET, params)
        row = cur.fetchone()
    if row is not None:
        return Reservation(int(row[0]), day, amount)
    spent, reserved = spend_on(day, using)  # for the message only: the decision was the statement's
    raise BudgetExceeded(day=day, cap=cap, spent=spent, reserved=reserved, bound=amount)


def settle(reservation: Reservation, actual: Decimal, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Replace the reservation by the call's ``actual`` cost; False if the sweep had released it already
    (the actual cost is counted either way)."""
    if actual < 0:
        raise ValueError(f"a cost is non-negative, not {actual}")
    with connections[using].cursor() as cur:
        cur.execute(queries.SETTLE_LLM_RESERVATION, {"id": reservation.id, "day": reservation.day, "actual": actual})
        row = cur.fetchone()
    return bool(row and row[0])


def release(reservation: Reservation, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Give the reservation back (the call failed and cannot have been billed)."""
    return settle(reservation, Decimal(0), using)


async def areserve(amount: Decimal, **kwargs: Any) -> Reservation:
    from automate.secret_backends import in_db_thread

    reservation: Reservation = await in_db_thread(lambda: reserve(amount, **kwargs))
    return reservation


async def asettle(reservation: Reservation, actual: Decimal) -> bool:
    from automate.secret_backends import in_db_thread

    return bool(await in_db_thread(settle, reservation, actual))


async def arelease(reservation: Reservation) -> bool:
    from automate.secret_backends import in_db_thread

    return bool(await in_db_thread(release, reservation))
