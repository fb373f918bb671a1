"""The RQ worker runs scheduled jobs against the real database; the scheduler registers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from rq import Queue, SimpleWorker

from tests.test_audit import _fill, _insert_old, _tamper
from workers import jobs
from workers.schedule import SCHEDULE, build_scheduler


@pytest.fixture
def queue(redis_url: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Queue:
    monkeypatch.setenv("DATABASE_URL", db_url)
    conn = redis.Redis.from_url(redis_url)
    q = Queue("test-" + db_url.rsplit("/", 1)[1], connection=conn)
    q.empty()
    return q


def _run(queue: Queue, func) -> object:
    job = queue.enqueue(func)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh()
    assert job.is_finished, job.latest_result().exc_string if job.latest_result() else job.get_status()
    return job.return_value()


def test_retention_job_runs_through_rq(queue: Queue, conn: psycopg.Connection) -> None:
    _insert_old(conn, datetime.now(UTC) - timedelta(days=365 * 7), 4)
    _fill(conn, 2)
    assert _run(queue, jobs.purge_audit_log) == 4
    assert _run(queue, jobs.verify_audit_log) == "3 rows verified"


def test_nightly_verification_fails_loudly_on_tampering(queue: Queue, conn: psycopg.Connection) -> None:
    ids = _fill(conn, 3)
    _tamper(conn, f"UPDATE audit_log SET actor = 'forger' WHERE id = {ids[1]}")
    job = queue.enqueue(jobs.verify_audit_log)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh()
    assert job.is_failed and f"broken at row {ids[1]}" in job.latest_result().exc_string


def test_scheduler_registers_retention_daily(redis_url: str) -> None:
    scheduler = build_scheduler(redis_url)
    registered = {j.func_name: j.cron for j in scheduler.get_jobs()}
    assert registered["workers.jobs.purge_audit_log"] == "0 18 * * *"
    assert registered["workers.jobs.apply_search_outbox"] is None  # runs on an interval, not a cron
    assert len(registered) == len(SCHEDULE) + 1
    assert registered["workers.jobs.anonymise_returned_loans"] == "45 17 * * *"
    for job in scheduler.get_jobs():
        if job.cron is None:
            continue
        assert job.next_enqueue_time is not None and job.next_enqueue_time - datetime.now(UTC) <= timedelta(days=1)


def test_returned_loans_are_anonymised_unless_the_patron_keeps_history(queue: Queue, seeded: psycopg.Connection,
                                                                       staff_client, monkeypatch) -> None:
    from api.circulation import anonymise
    from tests.conftest import token_for
    from tests.test_circulation import add_item, add_patron

    with seeded.transaction():
        add_patron(seeded, "P001")
        keeper = add_patron(seeded, "P002")
        seeded.execute("UPDATE patron SET keep_history = true WHERE id = %s", (keeper,))
        for n in range(1001, 1008):
            add_item(seeded, str(n))
    counter = token_for(staff_client, "counter")
    for card, items in (("P001", ("1001", "1002", "1003", "1004")), ("P002", ("1005", "1006"))):
        for item in items:
            assert staff_client.post("/api/v1/circulation/checkout", headers=counter,
                                     json={"patron": card, "item": item}).status_code == 201
    for item in ("1001", "1002", "1003", "1005"):
        staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": item})
    monkeypatch.setattr(anonymise, "BATCH", 2)  # several batches
    assert _run(queue, jobs.anonymise_returned_loans) == 3
    rows = seeded.execute("SELECT i.barcode, l.patron_id IS NULL AS anonymous, l.anonymised_at IS NOT NULL AS marked, "
                          "l.patron_category, l.age_group FROM loan l JOIN item i ON i.id = l.item_id "
                          "ORDER BY i.barcode").fetchall()
    anonymous = {r["barcode"] for r in rows if r["anonymous"]}
    assert anonymous == {"1001", "1002", "1003"}  # P001's returned loans; P002 keeps history; open loans stay
    assert all(r["marked"] == r["anonymous"] for r in rows)
    assert all(r["patron_category"] == "general" and r["age_group"] != "" for r in rows)
    assert _run(queue, jobs.anonymise_returned_loans) == 0
    # Withdrawing consent takes effect at the next run.
    seeded.execute("UPDATE patron SET keep_history = false WHERE id = %s", (keeper,))
    assert _run(queue, jobs.anonymise_returned_loans) == 1
