"""The LLM daily budget against the real database: reserve, settle, release, the sweep, concurrency."""

from __future__ import annotations

import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from automate.connectors.llm import budget
from automate.connectors.llm.budget import BudgetExceeded, release, release_stale, reserve, settle, spend_on
from automate.connectors.llm.cost import Price, money, prompt_token_bound
from automate.models import Event, LlmReservation, LlmSpend, OutboxJob

D = Decimal
DAY = date(2031, 5, 17)  # a fixed day: the tests never touch today's row


def spend(day: date = DAY) -> tuple[Decimal, Decimal]:
    return spend_on(day)


@pytest.mark.django_db
def test_reserve_refuses_what_does_not_fit_and_names_the_numbers():
    a = reserve(D("0.6"), cap=D("1"), day=DAY)
    assert spend() == (D("0"), D("0.6"))
    with pytest.raises(BudgetExceeded) as info:
        reserve(D("0.5"), cap=D("1"), day=DAY)
    message = str(info.value)
    assert "DJANGO_AUTOMATE.POLICY.llm_budget_daily is 1 USD" in message
    assert "may cost up to 0.5 USD" in message and "0.000000 USD is spent" in message
    assert "0.600000 USD reserved" in message and "2031-05-17" in message
    assert info.value.details()["bound_usd"] == "0.5" and info.value.details()["policy"] == "POLICY.llm_budget_daily"
    assert spend() == (D("0"), D("0.6"))  # a refusal changes nothing
    b = reserve(D("0.4"), cap=D("1"), day=DAY)  # exactly up to the cap fits
    assert spend() == (D("0"), D("1"))
    assert {r.id for r in LlmReservation.objects.all()} == {a.id, b.id}


@pytest.mark.django_db
def test_a_bound_over_the_whole_cap_is_refused_on_a_fresh_day_and_stores_nothing():
    with pytest.raises(BudgetExceeded):
        reserve(D("2"), cap=D("1"), day=DAY)
    assert not LlmSpend.objects.exists() and not LlmReservation.objects.exists()


@pytest.mark.django_db
def test_a_zero_cap_refuses_every_call_but_a_free_one():
    with pytest.raises(BudgetExceeded):
        reserve(D("0.000001"), cap=D("0"), day=DAY)
    reserve(D("0"), cap=D("0"), day=DAY)
    assert spend() == (D("0"), D("0"))


@pytest.mark.django_db
def test_settle_moves_the_reservation_to_the_actual_cost():
    r = reserve(D("0.5"), cap=D("1"), day=DAY)
    assert settle(r, D("0.123456")) is True
    assert spend() == (D("0.123456"), D("0"))
    assert not LlmReservation.objects.exists()
    reserve(D("0.876544"), cap=D("1"), day=DAY)  # what is left fits again
    with pytest.raises(BudgetExceeded):
        reserve(D("0.000001"), cap=D("1"), day=DAY)


@pytest.mark.django_db
def test_release_gives_the_reservation_back():
    r = reserve(D("0.7"), cap=D("1"), day=DAY)
    assert release(r) is True
    assert spend() == (D("0"), D("0"))
    assert release(r) is False  # twice: nothing more is given back
    assert spend() == (D("0"), D("0"))
    reserve(D("1"), cap=D("1"), day=DAY)


@pytest.mark.django_db
def test_bad_amounts_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        reserve(D("-0.1"), cap=D("1"), day=DAY)
    r = reserve(D("0.1"), cap=D("1"), day=DAY)
    with pytest.raises(ValueError, match="non-negative"):
        settle(r, D("-1"))
    assert spend() == (D("0"), D("0.1"))


def _claimed_job(token: int = 1) -> tuple[Event, OutboxJob]:
    event = Event.objects.create(type="e", payload={})
    job = OutboxJob.objects.create(event=event, status="CLAIMED", worker_id="w-dead")
    OutboxJob.objects.filter(pk=job.pk).update(claim_token=token)
    return event, job


@pytest.mark.django_db
def test_a_reservation_remembers_its_job_and_claim_token():
    event, job = _claimed_job(token=7)
    r = reserve(D("0.1"), cap=D("1"), event_id=str(event.id), day=DAY)
    row = LlmReservation.objects.get(pk=r.id)
    assert (row.job_id, row.claim_token, row.day, row.amount) == (job.id, 7, DAY, D("0.1"))
    assert reserve(D("0.1"), cap=D("1"), event_id=str(uuid.uuid4()), day=DAY) is not None  # no job: none noted


@pytest.mark.django_db
def test_the_reservation_of_a_dead_job_is_released_once_its_lease_is_recovered():
    event, job = _claimed_job(token=1)
    dead = reserve(D("0.4"), cap=D("1"), event_id=str(event.id), hold_seconds=0, day=DAY)
    live = reserve(D("0.3"), cap=D("1"), hold_seconds=3600, day=DAY)  # not expired: kept whatever its job
    # Expired, but its job is still CLAIMED under its token (the worker may be alive, extending the lease).
    assert release_stale() == 0
    assert spend() == (D("0"), D("0.7"))
    with pytest.raises(BudgetExceeded):
        reserve(D("0.4"), cap=D("0.7"), day=DAY)
    # The worker died: its lease was recovered, and another worker claimed the job (token 2).
    OutboxJob.objects.filter(pk=job.pk).update(status="CLAIMED", claim_token=2)
    # The same call fits now: the sweep that runs before every reservation released the dead one.
    again = reserve(D("0.4"), cap=D("0.7"), day=DAY, hold_seconds=3600)
    assert set(LlmReservation.objects.values_list("id", flat=True)) == {live.id, again.id}
    assert spend() == (D("0"), D("0.7"))
    assert release(dead) is False  # the dead worker coming back cannot release it twice
    assert spend() == (D("0"), D("0.7"))


@pytest.mark.django_db
def test_a_recovered_pending_job_s_reservation_is_released():
    event, job = _claimed_job(token=1)
    reserve(D("0.4"), cap=D("1"), event_id=str(event.id), hold_seconds=0, day=DAY)
    OutboxJob.objects.filter(pk=job.pk).update(status="PENDING", worker_id=None)
    assert release_stale() == 1
    assert spend() == (D("0"), D("0"))


@pytest.mark.django_db
def test_the_sweep_releases_expired_reservations_of_ended_or_deleted_jobs_and_of_no_job():
    event, job = _claimed_job()
    other, deleted = _claimed_job()
    reserve(D("0.1"), cap=D("1"), event_id=str(event.id), day=DAY)
    reserve(D("0.2"), cap=D("1"), day=DAY)  # no job
    reserve(D("0.3"), cap=D("1"), day=date(2031, 5, 16))  # another day: swept too
    reserve(D("0.15"), cap=D("1"), event_id=str(other.id), day=DAY)
    assert release_stale() == 0  # none has expired
    LlmReservation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    OutboxJob.objects.filter(pk=job.pk).update(status="COMPLETED")
    OutboxJob.objects.filter(pk=deleted.pk).delete()  # retention
    assert release_stale() == 4
    assert spend() == (D("0"), D("0")) and spend(date(2031, 5, 16)) == (D("0"), D("0"))
    assert not LlmReservation.objects.exists()


@pytest.mark.django_db
def test_settling_a_swept_reservation_still_counts_what_was_spent():
    r = reserve(D("0.5"), cap=D("1"), hold_seconds=0, day=DAY)
    assert release_stale() == 1
    assert settle(r, D("0.2")) is False
    assert spend() == (D("0.2"), D("0"))


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_exceed_the_cap():
    """20 threads, each with its own connection, reserve 0.1 against a cap of 0.5 at once: exactly 5 fit."""
    start = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        start.wait()
        try:
            reserve(D("0.1"), cap=D("0.5"), day=DAY)
            result = "ok"
        except BudgetExceeded:
            result = "denied"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["denied"] * 15 + ["ok"] * 5
    assert spend() == (D("0"), D("0.5"))
    assert LlmReservation.objects.count() == 5


@pytest.mark.django_db
def test_spend_today_is_today_in_usd_floats():
    assert budget.spend_today() == (0.0, 0.0)
    r = reserve(D("0.25"), cap=D("1"))
    settle(r, D("0.125"))
    reserve(D("0.5"), cap=D("1"))
    assert budget.spend_today() == (0.125, 0.5)


@pytest.mark.django_db
def test_the_cap_defaults_to_the_setting():
    with override_settings(DJANGO_AUTOMATE={"POLICY": {"llm_budget_daily": 0.3}}):
        reserve(D("0.3"), day=DAY)
        with pytest.raises(BudgetExceeded, match="llm_budget_daily is 0.3 USD"):
            reserve(D("0.000001"), day=DAY)


@pytest.mark.django_db
def test_money_is_numeric_in_the_database():
    reserve(D("0.1"), cap=D("1"), day=DAY)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_typeof(spent)::text, pg_typeof(reserved)::text FROM automate_llm_spend")
        assert cur.fetchone() == ("numeric", "numeric")


# -- the bound ------------------------------------------------------------------------------------------


def test_the_prompt_bound_counts_utf8_bytes_and_overhead():
    ascii_only = prompt_token_bound([{"role": "user", "content": "hello"}])
    assert ascii_only == 8 + 8 + len("user") + 5
    accented = prompt_token_bound([{"role": "user", "content": "héllo"}])  # é is two bytes
    assert accented == ascii_only + 1
    parts = prompt_token_bound([{"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert parts == ascii_only
    two = prompt_token_bound([{"role": "system", "content": "a"}, {"role": "user", "content": "b", "name": "ann"}])
    assert two == 8 + (8 + 6 + 1) + (8 + 4 + 1 + 3)


def test_costs_are_exact_and_rounded_up_to_the_micro_dollar():
    price = Price.of(type("P", (), {"input_per_1k": 0.00015, "output_per_1k": 0.0006})())
    assert price.input_per_1k == D("0.00015")  # from the float's shortest repr, not its binary value
    assert price.cost(1000, 1000) == D("0.000750")
    assert price.cost(1, 0) == D("0.000001")  # 0.00000015 is never rounded down to nothing
    assert price.cost(0, 0) == D("0")
    assert money(D("0.0000001")) == D("0.000001")
