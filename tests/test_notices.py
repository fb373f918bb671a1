"""Email notices against a real SMTP server (aiosmtpd on 127.0.0.1): each notice is sent exactly once,
temporary failures come back with backoff, permanent ones are failed for staff to see and retry."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from rq import Queue

from api import db
from api.config import ConfigError, Settings, load_settings
from api.errors import ShokaError
from api.notices import service
from api.notices.mailer import MailError, SmtpMailer, classify
from api.notices.service import SendReport, queue_notice, send_due
from tests.conftest import console_login
from tests.test_circulation import add_item, add_patron
from tests.test_workers import _run
from workers import jobs

FROM = "書架市立図書館 <library@example.jp>"
LIBRARY = "書架市立図書館"
HOLD = {"title": "吾輩は猫である", "branch": "中央図書館", "deadline": date(2030, 1, 1)}  # a Tuesday
EMAIL = "taro@example.com"


# -- a real SMTP server ------------------------------------------------------------------------------

class Inbox:
    """Collects what the server accepted. `rcpt_replies`: answers to give to the next RCPT commands
    (e.g. "451 ..." once), after which recipients are accepted."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.rcpt_replies: list[str] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        with self.lock:
            if self.rcpt_replies:
                return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, raw in self.received]  # type: ignore[misc]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def mail_settings(settings: Settings, smtp: tuple[Inbox, int]) -> Settings:
    return replace(settings, smtp_host="127.0.0.1", smtp_port=smtp[1], smtp_tls="none", mail_from=FROM,
                   library_name=LIBRARY)


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    return smtp[0]


@pytest.fixture
def patron(seeded: psycopg.Connection) -> int:
    with seeded.transaction():
        pid = add_patron(seeded, "P001")
        seeded.execute("UPDATE patron SET email = %s WHERE id = %s", (EMAIL, pid))
    return pid


def queue(conn: psycopg.Connection, patron_id: int, key: str, kind: str = "hold_ready",
          data: dict[str, Any] | None = None) -> int | None:
    with conn.transaction():
        return queue_notice(conn, kind, patron_id, key, data or HOLD)


def send(conn: psycopg.Connection, settings: Settings, now: datetime | None = None, mailer: Any = None) -> SendReport:
    assert settings.mail_from is not None
    return send_due(conn, mailer or SmtpMailer(settings, timeout=5), library_name=settings.library_name,
                    mail_from=settings.mail_from, now=now)


def notice(conn: psycopg.Connection, notice_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM notice WHERE id = %s", (notice_id,)).fetchone()
    assert row is not None
    return dict(row)


# -- sending ---------------------------------------------------------------------------------------

def test_one_notice_is_one_mail_with_a_japanese_subject(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                        mail_settings: Settings) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    assert nid is not None
    assert send(conn, mail_settings) == SendReport(sent=1)
    assert len(inbox.received) == 1
    rcpt, raw = inbox.received[0]
    assert rcpt == [EMAIL]
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head.lower()  # RFC 2047 encoded words, not raw UTF-8
    msg = inbox.messages()[0]
    assert msg["Subject"] == "【書架市立図書館】予約資料のご用意ができました"
    assert msg["To"].addresses[0].addr_spec == EMAIL
    assert msg["To"].addresses[0].display_name == "図書 太郎"
    assert msg["From"].addresses[0].addr_spec == "library@example.jp"
    assert msg["From"].addresses[0].display_name == "書架市立図書館"
    assert msg["Message-ID"] == f"<notice-{nid}.shoka@example.jp>"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "図書 太郎 様" in body
    assert "吾輩は猫である" in body and "中央図書館" in body
    assert "受取期限：2030年1月1日（火）" in body
    assert "P001" not in body and "P001" not in raw.decode("ascii")  # no card number in a mail
    row = notice(conn, nid)
    assert (row["status"], row["attempts"], row["message_id"], row["last_error"]) == (
        "sent", 1, f"<notice-{nid}.shoka@example.jp>", None)
    assert row["sent_at"] is not None


def test_the_same_notice_asked_for_twice_is_one_row_and_one_mail(conn: psycopg.Connection, patron: int,
                                                                  inbox: Inbox, mail_settings: Settings) -> None:
    first = queue(conn, patron, "hold_ready:7")
    assert first is not None
    assert queue(conn, patron, "hold_ready:7", data={**HOLD, "title": "別の題"}) is None
    assert conn.execute("SELECT count(*) AS n FROM notice").fetchone()["n"] == 1
    assert send(conn, mail_settings) == SendReport(sent=1)
    assert send(conn, mail_settings) == SendReport()  # run again (a retried job): nothing more
    assert len(inbox.received) == 1
    assert "吾輩は猫である" in inbox.messages()[0].get_content()


def test_a_notice_exists_only_if_the_callers_transaction_commits(conn: psycopg.Connection, patron: int) -> None:
    with pytest.raises(RuntimeError):
        queue_notice(conn, "hold_ready", patron, "hold_ready:2", HOLD)  # not in a transaction
    with pytest.raises(ZeroDivisionError), conn.transaction():
        queue_notice(conn, "hold_ready", patron, "hold_ready:2", HOLD)
        1 / 0  # noqa: B018 — the event's transaction fails after queueing
    assert conn.execute("SELECT count(*) AS n FROM notice").fetchone()["n"] == 0


def test_concurrent_senders_send_each_notice_once(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                  mail_settings: Settings, db_url: str) -> None:
    for n in range(24):
        queue(conn, patron, f"hold_ready:{n}", data={**HOLD, "title": f"資料{n}"})
    reports: list[SendReport] = []

    def worker() -> None:
        with db.connect(db_url) as own:
            reports.append(send(own, mail_settings))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.sent for r in reports) == 24
    titles = sorted(m.get_content().split("資料　　：", 1)[1].split("\n", 1)[0] for m in inbox.messages())
    assert titles == sorted(f"資料{n}" for n in range(24))


def test_451_is_retried_after_a_minute_and_then_sent(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                     mail_settings: Settings) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    assert nid is not None
    inbox.rcpt_replies.append("451 4.3.0 Mailbox busy, try again later")
    t0 = datetime.now(UTC)
    assert send(conn, mail_settings, now=t0) == SendReport(retried=1)
    row = notice(conn, nid)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "451 4.3.0 Mailbox busy, try again later"
    assert row["next_attempt_at"] == t0 + timedelta(minutes=1)
    assert send(conn, mail_settings, now=t0 + timedelta(seconds=59)) == SendReport()  # not due yet
    assert send(conn, mail_settings, now=t0 + timedelta(minutes=1)) == SendReport(sent=1)
    row = notice(conn, nid)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert len(inbox.received) == 1


def test_backoff_doubles_from_one_minute_and_gives_up_after_eight_attempts() -> None:
    minutes = [1, 2, 4, 8, 16, 32, 64]
    assert [service.backoff(n) for n in range(1, 9)] == [timedelta(minutes=m) for m in minutes] + [None]


def test_server_down_backs_off_then_fails_after_eight_attempts(conn: psycopg.Connection, patron: int,
                                                               mail_settings: Settings) -> None:
    down = replace(mail_settings, smtp_port=_free_port())  # nothing listens there
    nid = queue(conn, patron, "hold_ready:1")
    assert nid is not None
    now = datetime.now(UTC)
    waits = []
    for attempt in range(1, 8):
        assert send(conn, down, now=now) == SendReport(retried=1)
        row = notice(conn, nid)
        assert (row["status"], row["attempts"]) == ("pending", attempt)
        assert "unavailable" in row["last_error"]
        waits.append(row["next_attempt_at"] - now)
        now = row["next_attempt_at"]
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 64)]
    assert send(conn, down, now=now) == SendReport(failed=1)
    assert (notice(conn, nid)["status"], notice(conn, nid)["attempts"]) == ("failed", 8)


def test_a_server_problem_stops_the_batch(conn: psycopg.Connection, patron: int, mail_settings: Settings) -> None:
    """STARTTLS demanded of a server that does not offer it: the first notice waits, the others are not tried."""
    ids = [queue(conn, patron, f"hold_ready:{n}") for n in range(3)]
    assert send(conn, replace(mail_settings, smtp_tls="starttls")) == SendReport(retried=1)
    rows = [notice(conn, i) for i in ids if i]
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 1), ("pending", 0), ("pending", 0)]
    assert "does not support" in rows[0]["last_error"]


def test_login_with_smtp_user_and_password(conn: psycopg.Connection, patron: int, mail_settings: Settings) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    inbox, logins = Inbox(), []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        good = replace(mail_settings, smtp_port=controller.port, smtp_user="library", smtp_password="s3cret")
        wrong = replace(good, smtp_password="wrong")
        nid = queue(conn, patron, "hold_ready:1")
        assert nid is not None
        t0 = datetime.now(UTC)
        assert send(conn, wrong, now=t0) == SendReport(retried=1)  # our password, not the patron's fault
        assert notice(conn, nid)["last_error"].startswith("535")
        assert send(conn, good, now=t0 + timedelta(minutes=1)) == SendReport(sent=1)
    finally:
        controller.stop()
    assert logins[-1] == ("library", "s3cret") and set(logins[:-1]) == {("library", "wrong")}  # PLAIN, then LOGIN
    assert len(inbox.received) == 1


def test_patron_without_email_is_skipped(conn: psycopg.Connection, seeded: psycopg.Connection, inbox: Inbox,
                                         mail_settings: Settings) -> None:
    with conn.transaction():
        pid = add_patron(conn, "P009")
    nid = queue(conn, pid, "hold_ready:1")
    assert nid is not None
    assert send(conn, mail_settings) == SendReport(skipped=1)
    row = notice(conn, nid)
    assert (row["status"], row["attempts"]) == ("skipped", 0)
    assert "no email address" in row["last_error"]
    assert inbox.received == []


def test_an_address_that_cannot_be_written_fails_without_sending(conn: psycopg.Connection, patron: int,
                                                                 inbox: Inbox, mail_settings: Settings) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    conn.execute("UPDATE patron SET email = 'taro@@example.com' WHERE id = %s", (patron,))
    assert send(conn, mail_settings) == SendReport(failed=1)
    row = notice(conn, nid)  # type: ignore[arg-type]
    assert row["status"] == "failed" and row["last_error"].startswith("メールを作成できません")
    assert inbox.received == []


def test_the_current_address_and_name_are_used(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                               mail_settings: Settings) -> None:
    queue(conn, patron, "hold_ready:1")
    conn.execute("UPDATE patron SET email = 'new@example.org', name = '図書 花子' WHERE id = %s", (patron,))
    send(conn, mail_settings)
    assert inbox.received[0][0] == ["new@example.org"]
    assert "図書 花子 様" in inbox.messages()[0].get_content()


def test_a_reminder_whose_date_has_passed_is_not_sent(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                      mail_settings: Settings) -> None:
    late = queue(conn, patron, "due_reminder:1:2026-04-01", "due_reminder", {"title": "x", "due_date": "2026-04-01"})
    timely = queue(conn, patron, "due_reminder:2:2026-04-02", "due_reminder", {"title": "y", "due_date": "2026-04-02"})
    assert late and timely
    conn.execute("UPDATE notice SET next_attempt_at = '2026-01-01T00:00Z'")
    # 15:00 UTC on 1 April is midnight in Japan: 1 April has passed, 2 April has not.
    assert send(conn, mail_settings, now=datetime(2026, 4, 1, 15, 0, tzinfo=UTC)) == SendReport(sent=1, skipped=1)
    assert notice(conn, late)["status"] == "skipped" and "due date passed" in notice(conn, late)["last_error"]
    assert notice(conn, timely)["status"] == "sent"
    assert len(inbox.received) == 1


class WorkerKilled(BaseException):
    """Stands for the worker process dying (not an exception the sender may handle)."""


def test_a_worker_that_died_mid_send_is_not_resent(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                   mail_settings: Settings) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    assert nid is not None
    real = SmtpMailer(mail_settings, timeout=5)

    class DiesAfterSending:
        def send(self, message: EmailMessage) -> None:
            real.send(message)
            raise WorkerKilled

    t0 = datetime.now(UTC)
    with pytest.raises(WorkerKilled):
        send(conn, mail_settings, now=t0, mailer=DiesAfterSending())
    assert notice(conn, nid)["status"] == "sending"
    assert len(inbox.received) == 1
    assert send(conn, mail_settings, now=t0 + timedelta(minutes=14)) == SendReport()  # maybe still in flight
    assert notice(conn, nid)["status"] == "sending"
    assert send(conn, mail_settings, now=t0 + timedelta(minutes=15)) == SendReport(failed=1)
    row = notice(conn, nid)
    assert row["status"] == "failed" and row["last_error"].startswith("送信結果不明")
    assert send(conn, mail_settings, now=t0 + timedelta(hours=3)) == SendReport()
    assert len(inbox.received) == 1  # never twice


# -- 550 and the staff screen ------------------------------------------------------------------------

@pytest.fixture
def console(seeded: psycopg.Connection, mail_settings: Settings, db_url: str, redis_url: str) -> Iterator[TestClient]:
    from api.app import create_staff_app
    from staff.notices import router

    app = create_staff_app(mail_settings, db_url, redis_url)
    if not any(getattr(r, "path", "") == "/notices" for r in app.routes):
        app.include_router(router)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def test_550_fails_at_once_shows_on_the_console_and_retry_sends_it(conn: psycopg.Connection, patron: int,
                                                                   inbox: Inbox, mail_settings: Settings,
                                                                   console: TestClient) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    refusal = "550 5.1.1 <taro@example.com>: Recipient address rejected: User unknown"
    inbox.rcpt_replies.append(refusal)
    assert send(conn, mail_settings) == SendReport(failed=1)
    row = notice(conn, nid)  # type: ignore[arg-type]
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, refusal)
    assert inbox.received == []

    console_login(console, "viewer")
    page = console.get("/notices")
    assert page.status_code == 200
    assert "Recipient address rejected: User unknown" in page.text and "P001" in page.text
    assert "送信失敗" in page.text and "予約資料の確保" in page.text
    assert "メール送信が設定されていません" not in page.text
    assert f"/patrons/notices/{nid}/retry" not in page.text  # viewers cannot retry
    audit = conn.execute("SELECT actor, details FROM audit_log WHERE action = 'notice.list'").fetchall()
    assert [(a["actor"], a["details"]["rows"]) for a in audit] == [("viewer", 1)]
    assert console.get("/notices?status=sent").text.count('id="notice-') == 0
    assert console.get("/notices?status=bogus").status_code == 422

    csrf = console_login(console, "counter")
    assert f"/patrons/notices/{nid}/retry" in console.get("/notices?status=failed").text
    assert console.post(f"/patrons/notices/{nid}/retry", data={"csrf_token": "wrong"},
                        follow_redirects=False).status_code == 403
    assert notice(conn, nid)["status"] == "failed"  # type: ignore[arg-type]
    resp = console.post(f"/patrons/notices/{nid}/retry", data={"csrf_token": csrf, "status": "failed"},
                        follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == f"/notices?retried={nid}&status=failed"
    row = notice(conn, nid)  # type: ignore[arg-type]
    assert (row["status"], row["attempts"]) == ("pending", 0)
    retry = conn.execute("SELECT actor, subject_id, details FROM audit_log WHERE action = 'notice.retry'").fetchone()
    assert (retry["actor"], retry["subject_id"], retry["details"]["last_error"]) == ("counter", "P001", refusal)
    assert send(conn, mail_settings) == SendReport(sent=1)
    assert inbox.received[0][0] == [EMAIL]
    assert notice(conn, nid)["message_id"] == f"<notice-{nid}.shoka@example.jp>"  # type: ignore[arg-type]
    # A sent notice cannot be sent again from the console.
    again = console.post(f"/patrons/notices/{nid}/retry", data={"csrf_token": csrf})
    assert again.status_code == 409 and "再送できるのは" in again.text
    assert len(inbox.received) == 1


def test_console_says_when_mail_is_not_configured(conn: psycopg.Connection, patron: int,
                                                  staff_client: TestClient) -> None:
    from staff.notices import router

    if not any(getattr(r, "path", "") == "/notices" for r in staff_client.app.routes):  # type: ignore[attr-defined]
        staff_client.app.include_router(router)  # type: ignore[attr-defined]
    queue(conn, patron, "hold_ready:1")
    console_login(staff_client, "viewer")
    page = staff_client.get("/notices")
    assert "メール送信が設定されていません" in page.text and "送信待ち" in page.text
    assert "Mail is not configured" in staff_client.get("/notices?lang=en").text


# -- the RQ jobs -----------------------------------------------------------------------------------

@pytest.fixture
def rq_queue(redis_url: str, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Queue:
    import redis

    monkeypatch.setenv("DATABASE_URL", db_url)
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_TLS", "SHOKA_MAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    q = Queue("test-" + db_url.rsplit("/", 1)[1], connection=redis.Redis.from_url(redis_url))
    q.empty()
    return q


def test_the_rq_job_sends_once_however_often_it_runs(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                     smtp: tuple[Inbox, int], rq_queue: Queue,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp[1]))
    monkeypatch.setenv("SMTP_TLS", "none")
    monkeypatch.setenv("SHOKA_MAIL_FROM", FROM)
    monkeypatch.setenv("SHOKA_LIBRARY_NAME", "熊取町立図書館")
    queue(conn, patron, "hold_ready:1")
    assert _run(rq_queue, jobs.send_notices) == SendReport(sent=1)
    assert _run(rq_queue, jobs.send_notices) == SendReport()
    assert len(inbox.received) == 1
    assert inbox.messages()[0]["Subject"] == "【熊取町立図書館】予約資料のご用意ができました"


def test_with_mail_off_the_job_sends_nothing_and_notices_wait(conn: psycopg.Connection, patron: int, inbox: Inbox,
                                                              rq_queue: Queue) -> None:
    nid = queue(conn, patron, "hold_ready:1")
    assert _run(rq_queue, jobs.send_notices) == SendReport()
    assert _run(rq_queue, jobs.queue_due_reminders) == {}
    assert notice(conn, nid)["status"] == "pending"  # type: ignore[arg-type]
    assert inbox.received == []


def test_the_scheduler_runs_send_notices_every_ten_seconds(redis_url: str) -> None:
    from workers.schedule import build_scheduler

    registered = {j.func_name: j for j in build_scheduler(redis_url).get_jobs()}
    sender = registered["workers.jobs.send_notices"]
    assert sender.next_enqueue_time is not None
    first = sender.next_enqueue_time
    sender.set_enqueue_time(first)
    assert sender.next_enqueue_time - first == timedelta(seconds=10)
    assert registered["workers.jobs.queue_due_reminders"].cron == "0 0 * * *"  # 09:00 JST


# -- reminders -------------------------------------------------------------------------------------

def _loan(conn: psycopg.Connection, patron_id: int, barcode: str, due: date) -> int:
    item = add_item(conn, barcode, title=f"本{barcode}")
    row = conn.execute(
        """INSERT INTO loan (item_id, patron_id, branch_id, due_date, patron_category, age_group, item_type)
           SELECT %s, %s, id, %s, 'general', '40', 'book' FROM branch WHERE code = 'main' RETURNING id""",
        (item, patron_id, due)).fetchone()
    return int(row["id"])


def test_reminders_day_by_day(conn: psycopg.Connection, patron: int) -> None:
    """One loan due on D and one hold with its pickup deadline on D, run daily from D-5 to D+22: which
    notices appear on which day, by hand."""
    d = date(2026, 4, 10)
    with conn.transaction():
        loan = _loan(conn, patron, "1001", d)
        item = add_item(conn, "1002", title="予約の本")
        hold = conn.execute(
            """INSERT INTO hold (patron_id, record_id, pickup_branch_id, status, placed_by, trapped_item_id,
                                 pickup_deadline)
               SELECT %s, i.record_id, i.branch_id, 'on_shelf', 'opac', i.id, %s FROM item i WHERE i.id = %s
               RETURNING id""", (patron, d, item)).fetchone()["id"]
        nomail = add_patron(conn, "P002")  # no email: no reminders
        _loan(conn, nomail, "1003", d)
        returned = _loan(conn, patron, "1004", d)
        conn.execute("UPDATE loan SET returned_at = now() WHERE id = %s", (returned,))
    created: dict[date, list[str]] = {}
    for offset in range(-5, 23):
        today = d + timedelta(days=offset)
        service.queue_reminders(conn, today=today)
        service.queue_reminders(conn, today=today)  # twice the same day: nothing more
        keys = conn.execute("SELECT dedupe_key FROM notice ORDER BY id").fetchall()
        new = [k["dedupe_key"] for k in keys][sum(len(v) for v in created.values()):]
        if new:
            created[today] = new
    assert created == {
        d - timedelta(days=2): [f"due_reminder:{loan}:2026-04-10"],
        d - timedelta(days=1): [f"pickup_reminder:{hold}"],
        d + timedelta(days=1): [f"overdue:{loan}:0"],
        d + timedelta(days=8): [f"overdue:{loan}:1"],
        d + timedelta(days=15): [f"overdue:{loan}:2"],
        d + timedelta(days=22): [f"overdue:{loan}:3"],
    }
    data = {r["kind"]: r["data"] for r in conn.execute("SELECT kind, data FROM notice WHERE dedupe_key LIKE '%:0' "
                                                        "OR kind <> 'overdue'").fetchall()}
    assert data["due_reminder"] == {"title": "本1001", "due_date": "2026-04-10", "branch": "中央図書館",
                                    "branch_en": None, "lang": "ja"}
    assert data["overdue"]["days_overdue"] == 1
    assert data["pickup_reminder"]["deadline"] == "2026-04-10"
    assert conn.execute("SELECT count(*) AS n FROM notice WHERE patron_id <> %s", (patron,)).fetchone()["n"] == 0


def test_a_renewed_loan_gets_a_reminder_for_its_new_due_date(conn: psycopg.Connection, patron: int) -> None:
    d = date(2026, 4, 10)
    with conn.transaction():
        loan = _loan(conn, patron, "1001", d)
    service.queue_reminders(conn, today=d - timedelta(days=2))
    conn.execute("UPDATE loan SET due_date = %s WHERE id = %s", (d + timedelta(days=14), loan))
    service.queue_reminders(conn, today=d + timedelta(days=12))
    keys = [r["dedupe_key"] for r in conn.execute("SELECT dedupe_key FROM notice ORDER BY id").fetchall()]
    assert keys == [f"due_reminder:{loan}:2026-04-10", f"due_reminder:{loan}:2026-04-24"]


# -- templates and data (pure) -------------------------------------------------------------------------

SAMPLES: dict[str, dict[str, Any]] = {
    "hold_ready": HOLD,
    "pickup_reminder": HOLD,
    "due_reminder": {"title": "吾輩は猫である", "due_date": "2026-04-10", "branch": "中央図書館"},
    "overdue": {"title": "吾輩は猫である", "due_date": "2026-04-10", "days_overdue": 8},
    "locker_code": {"title": "吾輩は猫である", "locker_bank": "駅前ロッカー", "locker_location": "東口",
                    "compartment": "A-03", "unlock_code": "482913", "deadline": "2026-04-12"},
    "request_decided": {"title": "新しい本", "decision": "declined", "reason": "品切れのため"},
}
SUBJECTS = {
    "hold_ready": ("【書架市立図書館】予約資料のご用意ができました", "[書架市立図書館] Your hold is ready for pickup"),
    "pickup_reminder": ("【書架市立図書館】予約資料の受取期限が近づいています",
                        "[書架市立図書館] Please collect your hold by Tuesday 1 January 2030"),
    "due_reminder": ("【書架市立図書館】返却期限のお知らせ", "[書架市立図書館] Due date reminder"),
    "overdue": ("【書架市立図書館】返却期限を過ぎた資料があります", "[書架市立図書館] An item you borrowed is overdue"),
    "locker_code": ("【書架市立図書館】予約資料を受取ロッカーにご用意しました",
                    "[書架市立図書館] Your hold is in a pickup locker"),
    "request_decided": ("【書架市立図書館】リクエストについてのお知らせ",
                        "[書架市立図書館] About your purchase request"),
}


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("kind", service.KINDS)
def test_every_kind_renders_in_both_languages(kind: str, lang: str) -> None:
    data = service.clean_data(kind, {**SAMPLES[kind], "lang": lang})
    out = service.render_notice(kind, data, patron_name="図書 太郎", library_name=LIBRARY)
    assert out.subject == SUBJECTS[kind][0 if lang == "ja" else 1]
    assert out.body.startswith("図書 太郎 様\n" if lang == "ja" else "Dear 図書 太郎,\n")
    assert data["title"] in out.body and LIBRARY in out.body
    assert "None" not in out.body and "\n\n\n" not in out.body
    if lang == "en":  # nothing Japanese but the names and values it was given
        rest = out.body
        for value in (*[str(v) for v in data.values()], LIBRARY, "図書 太郎"):
            rest = rest.replace(value, "")
        assert rest.isascii(), rest


def test_locker_mail_carries_bank_compartment_and_code() -> None:
    out = service.render_notice("locker_code", service.clean_data("locker_code", SAMPLES["locker_code"]),
                                patron_name="図書 太郎", library_name=LIBRARY)
    assert "ロッカー：駅前ロッカー（東口）\n" in out.body
    assert "扉の番号：A-03\n" in out.body and "暗証番号：482913\n" in out.body
    assert "受取期限：2026年4月12日（日）\n" in out.body


@pytest.mark.parametrize("decision, phrase", [("ordering", "購入することになりました"),
                                              ("borrowing", "ほかの図書館からお借りして"),
                                              ("arrived", "予約として登録しました"),
                                              ("declined", "理由：品切れのため")])
def test_request_decisions(decision: str, phrase: str) -> None:
    data = service.clean_data("request_decided", {"title": "新しい本", "decision": decision, "reason": "品切れのため"})
    assert phrase in service.render_notice("request_decided", data, patron_name="x", library_name=LIBRARY).body


def test_dates_in_japanese_and_english() -> None:
    # Known weekdays: 2024-02-29 Thursday, 2025-01-01 Wednesday, 2026-04-03 Friday, 2000-01-01 Saturday.
    assert [service.day_ja(d) for d in ("2024-02-29", "2025-01-01", date(2026, 4, 3), "2000-01-01")] == [
        "2024年2月29日（木）", "2025年1月1日（水）", "2026年4月3日（金）", "2000年1月1日（土）"]
    assert service.day_en("2024-02-29") == "Thursday 29 February 2024"
    # Every day of 2024-2026: the weekday advances by one each day from a known Monday (2024-01-01).
    day, n = date(2024, 1, 1), 0
    while day.year < 2027:
        assert service.day_ja(day).endswith(f"（{'月火水木金土日'[n % 7]}）")
        assert service.day_en(day).split()[0] == service.WEEKDAYS_EN[n % 7]
        day, n = day + timedelta(days=1), n + 1


@pytest.mark.parametrize("kind, data, field", [
    ("holds_ready", HOLD, "kind"),
    ("hold_ready", {"title": "x", "branch": "y"}, "data.deadline"),
    ("hold_ready", {**HOLD, "card": "P001"}, "data.card"),
    ("hold_ready", {**HOLD, "email": "a@b.c"}, "data.email"),
    ("hold_ready", {**HOLD, "lang": "fr"}, "data.lang"),
    ("hold_ready", {**HOLD, "deadline": "3 April"}, "data.deadline"),
    ("hold_ready", {**HOLD, "title": ["a"]}, "data.title"),
    ("request_decided", {"title": "x", "decision": "declined"}, "data.reason"),
    ("request_decided", {"title": "x", "decision": "maybe"}, "data.decision"),
])
def test_bad_notice_data_is_refused_naming_the_field(kind: str, data: dict[str, Any], field: str) -> None:
    with pytest.raises(ShokaError) as err:
        service.clean_data(kind, data)
    assert err.value.field == field and err.value.status == 422


def test_message_id_is_stable_and_uses_the_librarys_domain() -> None:
    assert service.message_id_for(42, FROM) == "<notice-42.shoka@example.jp>"
    assert service.message_id_for(42, "library@city.example.lg.jp") == "<notice-42.shoka@city.example.lg.jp>"


def test_smtp_failures_are_classified() -> None:
    import smtplib

    refused = classify(smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"5.1.1 User unknown")}))
    assert (refused.reply, refused.permanent, refused.server_problem) == ("550 5.1.1 User unknown", True, False)
    busy = classify(smtplib.SMTPRecipientsRefused({"a@b.c": (452, b"4.2.2 Mailbox full")}))
    assert (busy.permanent, busy.server_problem) == (False, False)
    data = classify(smtplib.SMTPDataError(554, b"5.7.1 Message rejected"))
    assert (data.reply, data.permanent) == ("554 5.7.1 Message rejected", True)
    login = classify(smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication failed"))
    assert (login.permanent, login.server_problem) == (False, True)  # our password, not the notice
    down = classify(ConnectionRefusedError(111, "Connection refused"))
    assert (down.permanent, down.server_problem) == (False, True)
    assert isinstance(down, MailError)


# -- configuration ---------------------------------------------------------------------------------

@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SMTP_TLS", "SHOKA_MAIL_FROM"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_mail_is_off_without_smtp_host(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert not settings.mail_enabled and settings.mail_from is None


@pytest.mark.parametrize("tls, port", [("starttls", 587), ("ssl", 465), ("none", 25), (None, 587)])
def test_smtp_port_follows_the_tls_mode(env: pytest.MonkeyPatch, tls: str | None, port: int) -> None:
    env.setenv("SMTP_HOST", "mail.example.jp")
    env.setenv("SHOKA_MAIL_FROM", FROM)
    if tls:
        env.setenv("SMTP_TLS", tls)
    settings = load_settings()
    assert (settings.smtp_port, settings.smtp_tls, settings.mail_enabled) == (port, tls or "starttls", True)
    env.setenv("SMTP_PORT", "2525")
    assert load_settings().smtp_port == 2525


def test_smtp_password_is_not_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("SMTP_HOST", "mail.example.jp")
    env.setenv("SHOKA_MAIL_FROM", FROM)
    env.setenv("SMTP_USER", "library")
    env.setenv("SMTP_PASSWORD", "s3cret-smtp")
    settings = load_settings()
    assert settings.smtp_password == "s3cret-smtp" and "s3cret-smtp" not in repr(settings)


@pytest.mark.parametrize("variables, named", [
    ({"SMTP_HOST": "mail.example.jp"}, "SHOKA_MAIL_FROM"),
    ({"SMTP_HOST": "mail.example.jp", "SHOKA_MAIL_FROM": "書架市立図書館"}, "SHOKA_MAIL_FROM"),
    ({"SMTP_HOST": "mail.example.jp", "SHOKA_MAIL_FROM": FROM, "SMTP_TLS": "tls"}, "SMTP_TLS"),
    ({"SMTP_HOST": "mail.example.jp", "SHOKA_MAIL_FROM": FROM, "SMTP_PORT": "smtp"}, "SMTP_PORT"),
])
def test_bad_smtp_settings_are_a_clear_config_error(env: pytest.MonkeyPatch, variables: dict[str, str],
                                                    named: str) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()
