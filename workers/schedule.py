"""The worker process and the scheduler process (RQ's CronScheduler)."""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.cron import CronScheduler

from workers import jobs

QUEUES = ("search", "default")  # the worker takes search updates first

# Cron expressions are evaluated in UTC: 18:00 UTC is 03:00 in Japan, when libraries are closed.
SCHEDULE = (
    (jobs.purge_audit_log, "0 18 * * *"),
    (jobs.verify_audit_log, "30 18 * * *"),
    (jobs.prune_search_outbox, "15 18 * * *"),
    (jobs.anonymise_returned_loans, "45 17 * * *"),
    (jobs.expire_holds, "30 17 * * *"),
    (jobs.purge_old_receipts, "50 17 * * *"),
    (jobs.queue_due_reminders, "0 0 * * *"),  # 09:00 JST: reminder mails arrive in the morning
    # Every 10 seconds (croniter's sixth field is seconds), on the default queue: sending mail must not
    # hold up search updates on the search queue.
    (jobs.send_notices, "* * * * * */10"),
)
# Every second: a change is searchable within about two seconds of its commit.
INTERVALS = ((jobs.apply_search_outbox, 1),)


def run_worker(redis_url: str) -> None:
    conn = redis.Redis.from_url(redis_url)
    Worker([Queue(name, connection=conn) for name in QUEUES], connection=conn, name=None).work(
        with_scheduler=True)


def build_scheduler(redis_url: str) -> CronScheduler:
    scheduler = CronScheduler(connection=redis.Redis.from_url(redis_url), name="shoka")
    for func, cron in SCHEDULE:
        scheduler.register(func, queue_name="default", cron=cron, job_timeout=3600)
    for func, seconds in INTERVALS:
        scheduler.register(func, queue_name="search", interval=seconds, job_timeout=600, result_ttl=0, ttl=30)
    return scheduler


def run_scheduler(redis_url: str) -> None:
    build_scheduler(redis_url).start()
