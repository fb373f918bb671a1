"""End to end in a real browser (Debian's Chromium): a patron signs in to My Library on the OPAC and
places a hold on a book that is on loan; staff check it in at the counter and the hold is trapped; the
patron gets the email (seen by a real SMTP server, aiosmtpd); staff put the book in a pickup locker and
the patron gets the locker number and code; the patron sees it all in My Library.

The OPAC and the staff app are separate uvicorn servers; the OPAC reaches patron data only through
the internal API over HTTP, with the service token.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, expect
from psycopg.types.json import Jsonb

from api import db
from api.audit import Actor
from api.config import Settings
from tests.test_browser import TIMEOUT_MS, Served, axe_problems, sign_in

SERVICE_TOKEN = "browser-test-service-token-0123456789"
CARD, PASSWORD, EMAIL = "2000000001", "patron-pass-2026", "hanako@example.jp"


class Inbox:
    """An SMTP server's mailbox: every message it accepted, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def bodies(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return [(str(m["To"]), str(m["Subject"]), m.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
                    for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def send_mail(db_url: str, settings: Settings, port: int) -> None:
    """What the worker's send_notices job does every ten seconds."""
    from api.notices.mailer import SmtpMailer
    from api.notices.service import send_due

    mail_settings = replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    with db.connect(db_url) as conn:
        send_due(conn, SmtpMailer(mail_settings), library_name=settings.library_name,
                 mail_from="書架市立図書館 <library@example.jp>")


@pytest.fixture
def library(seeded: psycopg.Connection) -> dict[str, int]:
    from api.circulation import service as circulation
    from api.lockers.service import create_bank
    from api.mylibrary.service import set_password

    actor = Actor.cli()
    with seeded.transaction():
        rid = seeded.execute(
            "INSERT INTO bib_record (source, control_number, title, title_reading, data) "
            "VALUES ('JTNDL', 'E2E', '銀河鉄道の夜', 'ギンガ テツドウ ノ ヨル', %s) RETURNING id",
            (Jsonb({"title": "銀河鉄道の夜", "title_reading": "ギンガ テツドウ ノ ヨル",
                    "authors": [{"name": "宮沢, 賢治", "reading": "ミヤザワ, ケンジ"}]}),)).fetchone()["id"]
        seeded.execute("""INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number)
                          SELECT %s, 'G0001', id, id, 'book', '913.6/ミ' FROM branch WHERE code = 'main'""", (rid,))
        ids = {}
        for card, name, mail in ((CARD, "書架 花子", EMAIL), ("2000000002", "借りて 次郎", "jiro@example.jp")):
            ids[card] = seeded.execute(
                """INSERT INTO patron (card, name, name_reading, reading_key, category, home_branch_id, expires_on,
                                       email)
                   SELECT %s, %s, 'ショカ ハナコ', 'ショカハナコ', 'general', id, %s, %s FROM branch WHERE code = 'main'
                   RETURNING id""", (card, name, date.today() + timedelta(days=365), mail)).fetchone()["id"]
    set_password(seeded, actor, ids[CARD], PASSWORD)
    create_bank(seeded, actor, "main-locker", "正面玄関ロッカー", "main", ["A1", "A2"], location="正面玄関")
    circulation.checkout(seeded, actor, "2000000002", "G0001", branch="main")
    return {"record": int(rid), "patron": ids[CARD]}


@pytest.fixture
def servers(seeded: psycopg.Connection, library: dict[str, int], settings: Settings, db_url: str, opac_db_url: str,
            redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    from api.app import create_staff_app
    from opac.app import create_opac_app

    local = replace(settings, data_dir=tmp_path, service_token=SERVICE_TOKEN)
    staff = Served(create_staff_app(local, db_url, redis_url))
    opac = Served(create_opac_app(replace(local, internal_url=staff.url), opac_db_url, redis_url))
    with staff, opac:
        yield staff.url, opac.url


def test_hold_trap_mail_locker_and_my_library(browser: Browser, servers: tuple[str, str], library: dict[str, int],
                                              smtp: tuple[Inbox, int], seeded: psycopg.Connection, db_url: str,
                                              settings: Settings) -> None:
    staff_url, opac_url = servers
    inbox, smtp_port = smtp
    patron_ctx = browser.new_context(locale="ja-JP")
    staff_ctx = browser.new_context(locale="ja-JP")
    for ctx in (patron_ctx, staff_ctx):
        ctx.set_default_timeout(TIMEOUT_MS)
    try:
        patron: Page = patron_ctx.new_page()
        staff: Page = staff_ctx.new_page()

        # 1. The patron finds the record and asks to reserve it: sign-in comes first, then the pickup branch.
        patron.goto(f"{opac_url}/records/{library['record']}")
        expect(patron.get_by_role("heading", level=1)).to_contain_text("銀河鉄道の夜")
        patron.get_by_role("button", name="この資料を予約する").click()
        patron.get_by_label("利用者番号").fill(CARD)
        patron.get_by_label("パスワード").fill(PASSWORD)
        patron.get_by_label("パスワード").press("Enter")
        expect(patron.get_by_label("受取館")).to_be_visible()
        assert axe_problems(patron) == ""
        patron.get_by_role("button", name="予約する", exact=True).click()
        expect(patron.locator("main")).to_contain_text("銀河鉄道の夜")
        hold = seeded.execute("SELECT id, status FROM hold WHERE patron_id = %s", (library["patron"],)).fetchone()
        assert hold["status"] == "placed"
        assert CARD not in patron.url and "hanako" not in patron.url

        # 2. The borrower returns it; the counter's check-in traps the hold for the hold shelf.
        sign_in(staff, staff_url, "counter")
        staff.goto(f"{staff_url}/circulation/checkin")
        staff.keyboard.type("G0001")
        staff.keyboard.press("Enter")
        expect(staff.locator(".alert-hold")).to_contain_text("予約があります")
        assert seeded.execute("SELECT status FROM hold WHERE id = %s", (hold["id"],)).fetchone()["status"] == "on_shelf"

        # 3. The worker sends the "ready" mail through the library's SMTP server.
        send_mail(db_url, settings, smtp_port)
        mails = inbox.bodies()
        assert len(mails) == 1 and f"<{EMAIL}>" in mails[0][0] and "銀河鉄道の夜" in mails[0][2], mails
        assert CARD not in mails[0][2]

        # 4. Staff put it in a locker: the loan is made, the code is shown once and mailed to the patron.
        staff.goto(f"{staff_url}/lockers")
        staff.get_by_role("button", name="貸出してロッカーに入れる").first.click()
        expect(staff.get_by_role("heading", level=1)).to_have_text("ロッカーに入れました")
        code = staff.locator("strong.badge").inner_text().strip()
        compartment = staff.locator("dd strong").first.inner_text().strip()
        assert re.fullmatch(r"\d{4,6}", code) and compartment in ("A1", "A2")
        send_mail(db_url, settings, smtp_port)
        mails = inbox.bodies()
        assert len(mails) == 2, mails
        to, _subject, body = mails[1]
        assert f"<{EMAIL}>" in to and compartment in body and code in body and "正面玄関ロッカー" in body
        # Sending again sends nothing twice.
        send_mail(db_url, settings, smtp_port)
        assert len(inbox.bodies()) == 2

        # 5. The patron sees it in My Library, with the locker.
        patron.goto(f"{opac_url}/mylibrary")
        main = patron.locator("main")
        expect(main).to_contain_text("受取ロッカーに用意しました")
        expect(main).to_contain_text(compartment)
        expect(main).to_contain_text("銀河鉄道の夜")
        assert not re.search(rf"(?<!\d){code}(?!\d)", patron.content())  # the code travels by mail only
        assert axe_problems(patron) == ""
        loan = seeded.execute("SELECT p.card FROM loan l JOIN patron p ON p.id = l.patron_id JOIN item i "
                              "ON i.id = l.item_id WHERE i.barcode = 'G0001' AND l.returned_at IS NULL").fetchone()
        assert loan["card"] == CARD
    finally:
        patron_ctx.close()
        staff_ctx.close()
