"""Circulation settings on the admin screens (貸出規則・開館日カレンダー・バーコード番号帯・カウンター端末・利用者区分):
every screen in both languages, permissions and CSRF on every change, audit rows, refusals that name the field and
the value and write nothing, and the settings reaching circulation (due dates, the calendar, the printer)."""

from __future__ import annotations

import html
import re
import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.audit import Actor
from api.calendar.days import BranchCalendar
from api.circulation import admin, service
from devices.printers import PrinterSettings, decode_escpos, render_text
from staff import circulation_admin
from tests.conftest import console_login
from tests.test_circulation import add_item, add_patron

JST = ZoneInfo("Asia/Tokyo")
TABLES = ("loan_rule", "branch_calendar", "calendar_day", "barcode_rule", "workstation", "patron_category")


@pytest.fixture
def settings_db(seeded: psycopg.Connection) -> psycopg.Connection:
    """One workstation (ws1, no printer), one barcode range and one loan rule besides the fallback (id 1)."""
    with seeded.transaction():
        seeded.execute("INSERT INTO workstation (code, name, branch_id) SELECT 'ws1', 'カウンター1', id FROM branch "
                       "WHERE code = 'main'")
        seeded.execute("INSERT INTO barcode_rule (kind, name, prefix, length, check_scheme) "
                       "VALUES ('item', '資料', '1', 8, 'mod10_w21')")
        seeded.execute("INSERT INTO loan_rule (patron_category, item_type, branch_id, loan_days, max_loans) "
                       "VALUES ('child', NULL, NULL, 21, 5)")
        seeded.execute("INSERT INTO calendar_day (branch_id, day, closed, reason) SELECT id, '2027-01-05', true, "
                       "'館内整理' FROM branch WHERE code = 'main'")
    return seeded


def snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """Everything these screens can change, and the audit log's length."""
    out: dict[str, Any] = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    out["audit"] = conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"]
    return out


def audit_actions(conn: psycopg.Connection, since: int = 0) -> list[tuple[str, str]]:
    return [(r["action"], r["subject_id"]) for r in conn.execute(
        "SELECT action, subject_id FROM audit_log WHERE id > %s AND action NOT LIKE 'auth.%%' ORDER BY id",
        (since,)).fetchall()]


def last_audit_id(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) AS n FROM audit_log").fetchone()["n"])


def post(client: TestClient, path: str, csrf: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={**(data or {}), "csrf_token": csrf}, follow_redirects=False)


def text_of(page: str) -> str:
    """The page's text with tags removed and whitespace collapsed, for assertions on what people read."""
    blocks = re.sub(r"</?(?:td|th|tr|p|li|caption|h\d|div|table|thead|tbody|option|select|label|ul|pre|br)\b[^>]*>",
                    " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", blocks)))


RULE = {"patron_category": "general", "item_type": "book", "branch": "main", "loan_days": "7", "max_loans": "10",
        "max_loans_of_type": "3", "renewals": "1", "renewal_days": "7", "max_holds": "5", "fixed_due_date": "",
        "loanable": "on"}
BARCODE = {"kind": "patron", "name": "新カード", "prefix": "7", "length": "11", "check_scheme": "mod10_w21_digits",
           "branch": ""}
WORKSTATION = {"code": "east-1", "name": "東カウンター", "branch": "east", "connection": "network",
               "host": "192.0.2.10", "port": "9100", "width": "42", "timeout": "3"}
CATEGORY = {"code": "student", "name": "学生", "name_en": "Student", "card_years": "4"}
YEAR_2027 = {"step": "apply", "year": "2027", "weekly_closed": "0", "close_on_national_holidays": "on",
             "open_on_holiday": "on", "new_year": "on", "new_year_from": "12-29", "new_year_to": "01-03"}


def mutations(conn: psycopg.Connection) -> list[tuple[str, dict[str, Any]]]:
    barcode_id = conn.execute("SELECT id FROM barcode_rule").fetchone()["id"]
    child_rule = conn.execute("SELECT id FROM loan_rule WHERE patron_category = 'child'").fetchone()["id"]
    return [
        ("/admin/loan-rules", RULE),
        (f"/admin/loan-rules/{child_rule}", {**RULE, "patron_category": "child", "item_type": "", "branch": "",
                                             "max_loans_of_type": ""}),
        (f"/admin/loan-rules/{child_rule}/delete", {}),
        ("/admin/calendars/main/pattern", {"weekly_closed": "0"}),
        ("/admin/calendars/main/days", {"day": "2027-02-01", "closed": "closed", "reason": "特別整理"}),
        ("/admin/calendars/main/days/2027-01-05/delete", {}),
        ("/admin/calendars/main/year", YEAR_2027),
        ("/admin/barcodes", BARCODE),
        (f"/admin/barcodes/{barcode_id}", {"kind": "item", "prefix": "1", "length": "9", "check_scheme": "none"}),
        (f"/admin/barcodes/{barcode_id}/delete", {}),
        ("/admin/workstations", WORKSTATION),
        ("/admin/workstations/ws1", {"name": "カウンター2", "branch": "main", "connection": "none"}),
        ("/admin/workstations/ws1/test-print", {}),
        ("/admin/patron-categories", CATEGORY),
        ("/admin/patron-categories/general", {"name": "一般利用者", "card_years": "5"}),
    ]


# -- screens ----------------------------------------------------------------------------------------------------------

SCREENS = [
    ("/admin/loan-rules", "貸出規則", "Loan rules"),
    ("/admin/loan-rules/1", "貸出規則 1", "Loan rule 1"),
    ("/admin/calendars", "開館日カレンダー", "Opening calendars"),
    ("/admin/calendars/main", "開館日カレンダー: 中央図書館（main）", "Opening calendars: 中央図書館 (main)"),
    ("/admin/barcodes", "バーコード番号帯", "Barcode ranges"),
    ("/admin/barcodes/{barcode}", "バーコード番号帯: 資料", "Barcode ranges: 資料"),
    ("/admin/workstations", "カウンター端末", "Counter workstation"),
    ("/admin/workstations/ws1", "カウンター端末 ws1", "Counter workstation ws1"),
    ("/admin/patron-categories", "利用者区分", "Patron category"),
    ("/admin/patron-categories/general", "利用者区分 general", "Patron category general"),
]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_screen_renders(staff_client: TestClient, settings_db: psycopg.Connection, lang: str) -> None:
    console_login(staff_client, "admin")
    barcode = settings_db.execute("SELECT id FROM barcode_rule").fetchone()["id"]
    for path, heading_ja, heading_en in SCREENS:
        r = staff_client.get(path.format(barcode=barcode), params={"lang": lang})
        assert r.status_code == 200, (path, r.text)
        assert f'<html lang="{lang}">' in r.text
        h1 = text_of(r.text.split("<h1>", 1)[1].split("</h1>", 1)[0]).strip()
        assert h1 == (heading_ja if lang == "ja" else heading_en), path
        if path != "/admin/calendars":  # the index only lists the branches
            assert 'method="post"' in r.text.split("<main", 1)[1], path  # the administrator gets the forms
        # Tables say what they hold; every header cell has a scope; every field has a label.
        body = r.text.split("<main", 1)[1]
        assert body.count("<table") == body.count("<caption>"), path
        assert "<th>" not in body, path
        for field_id in re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', body):
            assert f'for="{field_id}"' in body, (path, field_id)
        if lang == "en":
            assert not re.search(r"[ぁ-んァ-ヶ]", h1), path
    admin_page = staff_client.get("/admin", params={"lang": lang}).text
    for link in ("/admin/loan-rules", "/admin/calendars", "/admin/barcodes", "/admin/workstations",
                 "/admin/patron-categories"):
        assert f'href="{link}"' in admin_page


def test_viewers_see_the_settings_without_forms(staff_client: TestClient, settings_db: psycopg.Connection) -> None:
    console_login(staff_client, "viewer")
    for path in ("/admin/loan-rules", "/admin/loan-rules/1", "/admin/calendars/main", "/admin/barcodes",
                 "/admin/workstations/ws1", "/admin/patron-categories/general"):
        r = staff_client.get(path)
        assert r.status_code == 200, path
        main = r.text.split("<main", 1)[1]
        assert 'method="post"' not in main, path


# -- permissions and CSRF ---------------------------------------------------------------------------------------------

def test_every_change_needs_the_permission_and_the_csrf_token(staff_client: TestClient,
                                                              settings_db: psycopg.Connection) -> None:
    changes = mutations(settings_db)
    before = snapshot(settings_db)
    for user in ("viewer", "counter"):
        csrf = console_login(staff_client, user)
        for path, data in changes:
            r = post(staff_client, path, csrf, data)
            assert r.status_code == 403, (user, path, r.status_code)
            assert "forbidden" in r.text
    csrf = console_login(staff_client, "admin")
    for path, data in changes:
        r = staff_client.post(path, data={**data, "csrf_token": "forged"}, follow_redirects=False)
        assert r.status_code == 403 and "csrf_failed" in r.text, path
        r = staff_client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
    after = snapshot(settings_db)
    logins = after.pop("audit") - before.pop("audit")
    assert after == before
    assert logins == 3  # the three sign-ins, nothing else
    assert csrf


def test_every_change_writes_an_audit_row(staff_client: TestClient, settings_db: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    expected = ["loan_rule.create", "loan_rule.update", "loan_rule.delete", "calendar.pattern", "calendar.day_set",
                "calendar.day_remove", "calendar.year_apply", "barcode_rule.create", "barcode_rule.update",
                "barcode_rule.delete", "workstation.create", "workstation.update", "workstation.test_print",
                "patron_category.create", "patron_category.update"]
    for (path, data), action in zip(mutations(settings_db), expected, strict=True):
        since = last_audit_id(settings_db)
        r = post(staff_client, path, csrf, data)
        assert r.status_code in (200, 303), (path, r.text)
        assert [a for a, _ in audit_actions(settings_db, since)] == [action], path
    row = settings_db.execute("SELECT actor, subject_type, subject_id, details FROM audit_log "
                              "WHERE action = 'loan_rule.create'").fetchone()
    assert (row["actor"], row["subject_type"]) == ("admin", "loan_rule")
    assert row["details"]["loan_days"] == 7 and row["details"]["branch"] == "main"
    # The changes themselves
    rule = settings_db.execute("SELECT * FROM loan_rule WHERE patron_category = 'general'").fetchone()
    assert (rule["loan_days"], rule["max_loans_of_type"], rule["renewal_days"], rule["max_holds"]) == (7, 3, 7, 5)
    assert settings_db.execute("SELECT count(*) AS n FROM loan_rule WHERE patron_category = 'child'").fetchone()[
        "n"] == 0
    ws = settings_db.execute("SELECT name, printer FROM workstation WHERE code = 'east-1'").fetchone()
    assert ws["name"] == "東カウンター"
    assert ws["printer"] == {"connection": "network", "host": "192.0.2.10", "port": 9100, "width": 42, "timeout": 3.0}
    category = settings_db.execute("SELECT * FROM patron_category WHERE code = 'student'").fetchone()
    assert (category["name"], category["name_en"], category["is_group"], category["card_years"]) == (
        "学生", "Student", False, 4)
    general = settings_db.execute("SELECT name, card_years FROM patron_category WHERE code = 'general'").fetchone()
    assert (general["name"], general["card_years"]) == ("一般利用者", 5)
    assert settings_db.execute("SELECT count(*) AS n FROM barcode_rule").fetchone()["n"] == 1  # added one, deleted one


# -- refusals ---------------------------------------------------------------------------------------------------------

INVALID = [
    ("/admin/loan-rules", {**RULE, "loan_days": "0"}, 422,
     "loan_days: 「0」 — 貸出期間（日）は 1〜366 の整数で入力してください。"),
    ("/admin/loan-rules", {**RULE, "max_loans": "十"}, 422,
     "max_loans: 「十」 — 貸出冊数は 0〜9999 の整数で入力してください。"),
    ("/admin/loan-rules", {**RULE, "fixed_due_date": "2027-02-30"}, 422,
     "fixed_due_date: 「2027-02-30」"),
    ("/admin/loan-rules", {**RULE, "item_type": "", "max_loans_of_type": "2"}, 422,
     "max_loans_of_type: 2 — 資料区分ごとの上限は資料区分を指定した規則にだけ設定できます。"),
    ("/admin/loan-rules", {**RULE, "patron_category": "", "item_type": "", "branch": "", "max_loans_of_type": ""}, 409,
     "同じ条件の貸出規則が既にあります（利用者区分 すべて・資料区分 すべて・館 すべて）。"),
    ("/admin/loan-rules", {**RULE, "item_type": "dvd"}, 422,
     "item_type: 「dvd」 — その資料区分はありません。"),
    ("/admin/loan-rules/1", {**RULE, "max_loans_of_type": ""}, 409,
     "既定の規則（すべて・すべて・すべて）の条件は変更できません。"),
    ("/admin/loan-rules/1/delete", {}, 409,
     "既定の規則（すべて・すべて・すべて）は削除できません。"),
    ("/admin/calendars/main/pattern", {"weekly_closed": ["0", "1", "2", "3", "4", "5", "6"]}, 422,
     "weekly_closed: [0, 1, 2, 3, 4, 5, 6] — 毎日休館にはできません。"),
    ("/admin/calendars/main/pattern", {"weekly_closed": "7"}, 422,
     "weekly_closed: 「7」 — 曜日は 0〜6 の整数で入力してください。"),
    ("/admin/calendars/main/days", {"day": "2027-02-30", "closed": "closed"}, 422,
     "day: 「2027-02-30」 — 日付は 2027-04-01 の形で入力してください。"),
    ("/admin/calendars/main/year", {**YEAR_2027, "year": "1999"}, 422,
     "year: 「1999」 — 年は 2000〜2099 の整数で入力してください。"),
    ("/admin/calendars/main/year", {**YEAR_2027, "new_year_to": "13-01"}, 422,
     "new_year_to: 「13-01」 — 月日は 12-29 の形で入力してください。"),
    ("/admin/barcodes", {**BARCODE, "length": "abc"}, 422,
     "length: 「abc」 — 桁数は 1〜32 の整数で入力してください。"),
    ("/admin/barcodes", {**BARCODE, "prefix": "7 7"}, 422,
     "prefix: 「7 7」 — 先頭の文字は英数字とハイフンで31文字以内です。"),
    ("/admin/barcodes", {**BARCODE, "kind": "item", "prefix": "1", "length": "8"}, 409,
     "資料のバーコードで先頭「1」の番号帯は既にあります。"),
    ("/admin/barcodes", {**BARCODE, "check_scheme": "mod97"}, 422,
     "check_scheme: 「mod97」"),
    ("/admin/workstations", {**WORKSTATION, "port": "abc"}, 422,
     "port: 「abc」 — 整数で指定してください。"),
    ("/admin/workstations", {**WORKSTATION, "code": "Main 1"}, 422,
     "code: 「Main 1」"),
    ("/admin/workstations", {**WORKSTATION, "code": "ws1"}, 409,
     "端末コード「ws1」は既にあります。"),
    ("/admin/workstations", {**WORKSTATION, "connection": "usb", "usb_vendor": "xyz"}, 422,
     "usb_vendor: 「xyz」 — 16 進数で指定してください。"),
    ("/admin/workstations/ws1", {"name": "", "branch": "main", "connection": "none"}, 422,
     "name: 「」 — 名前を入力してください。"),
    ("/admin/patron-categories", {**CATEGORY, "card_years": "30"}, 422,
     "card_years: 「30」 — 有効期間（年）は 1〜20 の整数で入力してください。"),
    ("/admin/patron-categories", {**CATEGORY, "code": "general"}, 409,
     "利用者区分「general」は既にあります。"),
    ("/admin/patron-categories/child", {"name": " ", "card_years": "3"}, 422,
     "name: 「 」 — 名前を入力してください。"),
]


@pytest.mark.parametrize(("path", "data", "status", "message"), INVALID, ids=[f"{c[0]}:{c[3][:16]}" for c in INVALID])
def test_invalid_input_names_the_field_and_value_and_writes_nothing(
        staff_client: TestClient, settings_db: psycopg.Connection, path: str, data: dict[str, Any], status: int,
        message: str) -> None:
    csrf = console_login(staff_client, "admin")
    before = snapshot(settings_db)
    r = post(staff_client, path, csrf, data)
    assert r.status_code == status, r.text
    assert message in text_of(r.text)
    assert 'role="alert"' in r.text
    assert "Traceback" not in r.text
    assert snapshot(settings_db) == before
    # The form keeps what was typed (except for deletions, which have no form).
    typed = {k: v for k, v in data.items() if isinstance(v, str) and v.strip() and k not in ("step", "closed")}
    if not path.endswith("/delete") and not path.endswith("/pattern"):
        for value in typed.values():
            assert html.escape(value, quote=True) in r.text or value in ("on",), (path, value)


def test_messages_follow_the_language(staff_client: TestClient, settings_db: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    staff_client.get("/admin/loan-rules?lang=en")
    r = post(staff_client, "/admin/loan-rules", csrf, {**RULE, "loan_days": "0"})
    assert r.status_code == 422
    assert "loan_days: &#39;0&#39; — loan_days must be a whole number from 1 to 366" in r.text


# -- loan rules reach circulation -------------------------------------------------------------------------------------

def test_a_rule_edited_on_screen_changes_the_due_date_circulation_computes(
        staff_client: TestClient, seeded: psycopg.Connection) -> None:
    with seeded.transaction():
        add_patron(seeded, "P001")
        for barcode in ("1001", "1002", "1003"):
            add_item(seeded, barcode)
    csrf = console_login(staff_client, "admin")
    lend_day = date(2027, 1, 6)  # a Wednesday
    # Monday closures, then the fallback rule lends for 12 days: Wed 6 Jan + 12 = Mon 18 Jan, closed → Tue 19 Jan.
    assert post(staff_client, "/admin/calendars/main/pattern", csrf, {"weekly_closed": "0"}).status_code == 303
    fallback = {k: v for k, v in RULE.items() if k not in ("patron_category", "item_type", "branch")}
    r = post(staff_client, "/admin/loan-rules/1", csrf, {**fallback, "loan_days": "12", "max_loans_of_type": ""})
    assert r.status_code == 303, r.text
    first = service.checkout(seeded, Actor.cli(), "P001", "1001", branch="main", today=lend_day)
    assert first.due_date == date(2027, 1, 19)
    # A rule for general × book × main wins over the fallback: 7 days, Wed 13 Jan.
    assert post(staff_client, "/admin/loan-rules", csrf, RULE).status_code == 303
    second = service.checkout(seeded, Actor.cli(), "P001", "1002", branch="main", today=lend_day)
    assert second.due_date == date(2027, 1, 13)
    # A fixed due date (end of term) set on screen: Sun 28 Mar 2027.
    rule_id = seeded.execute("SELECT id FROM loan_rule WHERE patron_category = 'general'").fetchone()["id"]
    assert post(staff_client, f"/admin/loan-rules/{rule_id}", csrf,
                {**RULE, "fixed_due_date": "2027-03-28"}).status_code == 303
    third = service.checkout(seeded, Actor.cli(), "P001", "1003", branch="main", today=lend_day)
    assert third.due_date == date(2027, 3, 28)
    # Deleting the specific rule brings the fallback back for the next loan.
    assert post(staff_client, f"/admin/loan-rules/{rule_id}/delete", csrf).status_code == 303
    assert service.checkin(seeded, Actor.cli(), "1001", branch="main", today=lend_day).loan_id == first.loan_id
    again = service.checkout(seeded, Actor.cli(), "P001", "1001", branch="main", today=lend_day)
    assert again.due_date == date(2027, 1, 19)


def test_which_rule_applies(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/calendars/main/pattern", csrf, {"weekly_closed": "0"}).status_code == 303
    assert post(staff_client, "/admin/loan-rules", csrf, RULE).status_code == 303
    page = staff_client.get("/admin/loan-rules", params={"try_category": "general", "try_item_type": "book",
                                                        "try_branch": "main"})
    assert page.status_code == 200
    today = date.today()
    due = today + timedelta(days=7)  # the same weekday as today; Mondays are closed
    if due.weekday() == 0:
        due += timedelta(days=1)
    assert f'<strong id="trial-due">{due.isoformat()}</strong>' in page.text
    trial = text_of(page.text.split('id="trial"', 1)[1].split("</div>", 1)[0])
    assert "規則 2: 一般（general）・一般図書（book）・中央図書館（main）" in trial
    assert "10 冊（規則 1）" in trial  # the overall limit comes from the fallback (no item type)
    # At the east branch only the fallback applies; reference books are not for loan whatever the rules say.
    east = staff_client.get("/admin/loan-rules", params={"try_category": "general", "try_item_type": "reference",
                                                        "try_branch": "east"})
    trial = text_of(east.text.split('id="trial"', 1)[1].split("</div>", 1)[0])
    assert "規則 1: すべて・すべて・すべて" in trial
    assert "禁帯出" in trial
    assert (today + timedelta(days=14)).isoformat() in trial
    # The matrix for main: general × book uses rule 2 (7 days, 3 of the type), child × book the fallback.
    matrix = staff_client.get("/admin/loan-rules", params={"matrix_branch": "main"}).text
    table = matrix.split("で使われる規則", 1)[1].split("</table>", 1)[0]
    rows = {text_of(r.split("</th>", 1)[0]).strip(): text_of(r) for r in table.split('<th scope="row">')[1:]}
    assert "7 日・3 冊（規則 2）" in rows["一般"] and "14 日・10 冊（規則 1）" in rows["児童"]


def test_rule_problems_are_shown_at_the_top(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    seeded.execute("DELETE FROM loan_rule")  # e.g. lost in a data migration
    console_login(staff_client, "admin")
    page = text_of(staff_client.get("/admin/loan-rules").text)
    assert "規則の問題 既定の規則（利用者区分・資料区分・館がすべて未指定）がありません。" in page
    assert "規則なし" in page


# -- calendars --------------------------------------------------------------------------------------------------------

MONDAYS_OPENED_2027 = {date(2027, 1, 11), date(2027, 3, 22), date(2027, 5, 3), date(2027, 7, 19), date(2027, 9, 20),
                       date(2027, 10, 11)}
# 国民の祝日 2027 not on a Monday, 年末年始 and the 振替休館 after each opened Monday holiday (worked out by hand).
CLOSED_2027 = {
    date(2027, 1, 1): "年末年始", date(2027, 1, 2): "年末年始", date(2027, 1, 3): "年末年始",
    date(2027, 1, 12): "振替休館", date(2027, 2, 11): "建国記念の日", date(2027, 2, 23): "天皇誕生日",
    date(2027, 3, 21): "春分の日", date(2027, 3, 23): "振替休館", date(2027, 4, 29): "昭和の日",
    date(2027, 5, 4): "みどりの日", date(2027, 5, 5): "こどもの日", date(2027, 5, 6): "振替休館",
    date(2027, 7, 20): "振替休館", date(2027, 8, 11): "山の日", date(2027, 9, 21): "振替休館",
    date(2027, 9, 23): "秋分の日", date(2027, 10, 12): "振替休館", date(2027, 11, 3): "文化の日",
    date(2027, 11, 23): "勤労感謝の日", date(2027, 12, 29): "年末年始", date(2027, 12, 30): "年末年始",
    date(2027, 12, 31): "年末年始",
}


def test_bulk_entry_for_2027_with_monday_closures(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    before = snapshot(seeded)
    preview = post(staff_client, "/admin/calendars/main/year", csrf, {**YEAR_2027, "step": "preview"})
    assert preview.status_code == 200
    assert snapshot(seeded) == before  # a preview writes nothing
    shown = text_of(preview.text.split('id="preview"', 1)[1])
    assert "休館 22 日・開館 6 日を登録します（うち現在の登録と異なるもの 28 日）" in shown
    assert "2027年5月6日（木） 休館 振替休館" in shown and "2027年1月11日（月） 開館 成人の日（開館）" in shown
    assert 'name="step" value="apply"' in preview.text
    applied = post(staff_client, "/admin/calendars/main/year", csrf, YEAR_2027)
    assert applied.status_code == 303 and applied.headers["location"].endswith("msg=year_applied")
    rows = seeded.execute("SELECT day, closed, reason FROM calendar_day ORDER BY day").fetchall()
    assert {r["day"]: r["reason"] for r in rows if r["closed"]} == CLOSED_2027
    assert {r["day"] for r in rows if not r["closed"]} == MONDAYS_OPENED_2027
    # What circulation reads: every day of 2027, closed exactly on the Mondays not opened and the dates above.
    main = service.branch_id(seeded, "main")
    calendar = service.load_calendar(seeded, main, date(2027, 1, 1), days=365)
    every_day = [date(2027, 1, 1) + timedelta(days=n) for n in range(365)]
    closed = {d for d in every_day if not calendar.is_open(d)}
    mondays = {d for d in every_day if d.weekday() == 0}
    assert closed == (mondays - MONDAYS_OPENED_2027) | set(CLOSED_2027)
    assert len(closed) == 52 - 6 + 22
    assert seeded.execute("SELECT weekly_closed FROM branch_calendar").fetchone()["weekly_closed"] == [0]
    # Applying again is an upsert: same rows, no duplicates.
    assert post(staff_client, "/admin/calendars/main/year", csrf, YEAR_2027).status_code == 303
    assert seeded.execute("SELECT count(*) AS n FROM calendar_day").fetchone()["n"] == 28
    page = staff_client.get("/admin/calendars/main?msg=year_applied")
    assert "年間の休館日・開館日を登録しました。" in page.text
    index = text_of(staff_client.get("/admin/calendars").text)
    assert "月曜日" in index and "2027年12月31日（金）" in index


def test_replace_clears_the_year_first(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/calendars/main/days", csrf,
                {"day": "2027-06-15", "closed": "closed", "reason": "蔵書点検"}).status_code == 303
    assert post(staff_client, "/admin/calendars/main/days", csrf,
                {"day": "2028-01-04", "closed": "closed", "reason": "蔵書点検"}).status_code == 303
    assert post(staff_client, "/admin/calendars/main/year", csrf, YEAR_2027).status_code == 303
    assert seeded.execute("SELECT count(*) AS n FROM calendar_day WHERE day = '2027-06-15'").fetchone()["n"] == 1
    assert post(staff_client, "/admin/calendars/main/year", csrf, {**YEAR_2027, "replace": "on"}).status_code == 303
    days = {r["day"] for r in seeded.execute("SELECT day FROM calendar_day").fetchall()}
    assert date(2027, 6, 15) not in days and date(2028, 1, 4) in days and len(days) == 28 + 1


def test_dated_closures_and_the_month_view(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    today = date.today()
    special = today + timedelta(days=10)
    assert post(staff_client, "/admin/calendars/main/pattern", csrf,
                {"weekly_closed": "0", "monthly_nth": ["-1", ""], "monthly_weekday": ["3", ""]}).status_code == 303
    row = seeded.execute("SELECT weekly_closed, monthly_closed FROM branch_calendar").fetchone()
    assert (row["weekly_closed"], row["monthly_closed"]) == ([0], [[-1, 3]])
    assert post(staff_client, "/admin/calendars/main/days", csrf,
                {"day": special.isoformat(), "closed": "closed", "reason": "特別整理期間"}).status_code == 303
    page = staff_client.get("/admin/calendars/main").text
    assert "特別整理期間" in page and "定期休館日" in page and "休館日（最終木曜日）" in page
    assert page.count('<table class="calendar">') == 12
    # The east branch's calendar is untouched.
    assert "休館 0 日" in staff_client.get("/admin/calendars/east").text
    assert post(staff_client, f"/admin/calendars/main/days/{special.isoformat()}/delete", csrf).status_code == 303
    assert seeded.execute("SELECT count(*) AS n FROM calendar_day").fetchone()["n"] == 0
    assert post(staff_client, f"/admin/calendars/main/days/{special.isoformat()}/delete", csrf).status_code == 404
    assert staff_client.get("/admin/calendars/nowhere").status_code == 404


def test_month_view_marks_closed_days_with_reasons() -> None:
    calendar = BranchCalendar(weekly_closed={0}, monthly_closed={(-1, 3)}, closed_dates={date(2027, 1, 2)},
                              open_dates={date(2027, 1, 11)})
    reasons = {date(2027, 1, 2): "年末年始", date(2027, 1, 11): "成人の日（開館）"}
    months = admin.month_views(calendar, reasons, date(2027, 1, 1), months=2)
    january = months[0]
    assert (january.year, january.month, months[1].month) == (2027, 1, 2)
    # 1 Jan 2027 is a Friday: the Sunday-first grid starts with five empty cells; six weeks in all.
    assert [c.day.day if c else None for c in january.weeks[0]] == [None, None, None, None, None, 1, 2]
    assert len(january.weeks) == 6 and [c.day.day if c else None for c in january.weeks[5]][:2] == [31, None]
    cells = {c.day: c for week in january.weeks for c in week if c}
    assert len(cells) == 31
    closed = {d.day: (c.reason_ja, c.reason_en) for d, c in cells.items() if c.closed}
    assert closed == {2: ("年末年始", "年末年始"), 4: ("定期休館日", "weekly closing day"),
                      18: ("定期休館日", "weekly closing day"), 25: ("定期休館日", "weekly closing day"),
                      28: ("休館日（最終木曜日）", "monthly closing day (last Thursday)")}
    assert (cells[date(2027, 1, 11)].closed, cells[date(2027, 1, 11)].reason_ja) == (False, "成人の日（開館）")
    assert january.closed_days == 5
    # Every day agrees with BranchCalendar.is_open, over two whole years.
    for view in admin.month_views(calendar, reasons, date(2027, 1, 1), months=24):
        for week in view.weeks:
            for cell in week:
                if cell:
                    assert cell.closed == (not calendar.is_open(cell.day)), cell.day


def test_describe_monthly() -> None:
    assert admin.describe_monthly(2, 3) == ("第2木曜日", "2nd Thursday")
    assert admin.describe_monthly(-1, 0) == ("最終月曜日", "last Monday")
    assert admin.describe_monthly(-2, 6) == ("最後から2番目の日曜日", "2nd last Sunday")
    assert admin.describe_monthly(3, 4) == ("第3金曜日", "3rd Friday")
    assert admin.describe_monthly(1, 1) == ("第1火曜日", "1st Tuesday")


# -- barcodes ---------------------------------------------------------------------------------------------------------

def test_barcode_ranges_and_the_scan_tester(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/barcodes", csrf, BARCODE).status_code == 303
    page = text_of(staff_client.get("/admin/barcodes").text)
    assert "利用者カード「新カード」: 先頭「7」・11桁・モジュラス10 ウェイト2・1（分割法・Luhn）・全館" in page
    english = text_of(staff_client.get("/admin/barcodes?lang=en").text)
    staff_client.get("/admin/barcodes?lang=ja")
    assert ("patron cards '新カード': prefix '7', 11 characters, modulus 10, weights 2-1, digits of products summed "
            "(Luhn), all branches") in english

    def scan(code: str, branch: str = "") -> dict[str, str]:
        r = staff_client.get("/admin/barcodes", params={"scan": code, "scan_branch": branch})
        assert r.status_code == 200
        result = r.text.split('id="scan-result"', 1)[1].split("</div>", 1)[0]
        rows = result.split('<th scope="row">')[1:]
        out = {text_of(row.split("</th>", 1)[0]).strip(): text_of(row.split("</th>", 1)[1]) for row in rows}
        out["classified"] = text_of(result.split("</table>", 1)[1])
        return out

    # 79927398713 is the textbook Luhn example: a valid patron card of this range.
    good = scan("79927398713")
    assert "受け付ける: 79927398713" in good["利用者番号の欄"]
    assert "受け付けない" in good["資料番号の欄"] and "patron_barcode_in_item_field" in good["資料番号の欄"]
    assert "1つの欄で読み取ったときの判定: 利用者カード" in good["classified"]
    wrong = scan("79927398710")
    assert "barcode_check_digit" in wrong["利用者番号の欄"] and "チェックデジット" in wrong["利用者番号の欄"]
    assert "受け付ける: 79927398710" in wrong["資料番号の欄"]  # in no item range: a number from the old system
    assert "受け付ける: 79927398713" in scan("A79927398713B")["利用者番号の欄"]  # start/stop stripped
    assert "barcode_length" in scan("7992739871")["利用者番号の欄"]
    assert "book_jan" in scan("9784003101018")["資料番号の欄"]
    # A range of the east branch only applies at east's counters.
    rule_id = seeded.execute("SELECT id FROM barcode_rule").fetchone()["id"]
    assert post(staff_client, f"/admin/barcodes/{rule_id}", csrf, {**BARCODE, "branch": "east"}).status_code == 303
    assert "受け付ける: 79927398710" in scan("79927398710", "main")["利用者番号の欄"]
    assert "barcode_check_digit" in scan("79927398710", "east")["利用者番号の欄"]
    unknown = staff_client.get("/admin/barcodes", params={"scan": "1", "scan_branch": "nowhere"})
    assert "scan_branch: 「nowhere」 — その館コードはありません。" in text_of(unknown.text)


# -- workstations and the test print ----------------------------------------------------------------------------------



PRINTED_AT = datetime(2027, 4, 1, 1, 30, tzinfo=UTC)  # 10:30 in Japan


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return PRINTED_AT.astimezone(tz) if tz else PRINTED_AT.replace(tzinfo=None)


def test_test_print_reaches_a_network_printer(staff_client: TestClient, seeded: psycopg.Connection,
                                              network_printer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(circulation_admin, "datetime", _FixedClock)
    csrf = console_login(staff_client, "admin")
    port = network_printer.server_address[1]
    r = post(staff_client, "/admin/workstations", csrf, {**WORKSTATION, "code": "main-1", "branch": "main",
                                                         "host": "127.0.0.1", "port": str(port), "width": "32"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/workstations/main-1?msg=created"
    r = post(staff_client, "/admin/workstations/main-1/test-print", csrf)
    assert r.status_code == 200
    assert f"テスト印字を送信しました（127.0.0.1:{port}）。" in text_of(r.text)
    assert network_printer.done.wait(5)
    printed = decode_escpos(network_printer.received[0], width=32)
    expected = render_text(admin.sample_receipt("テスト図書館", "中央図書館", PRINTED_AT.astimezone(JST)), 32)
    assert printed == expected
    # What the sample says, on 32-column paper.
    assert printed[0].strip() == "テスト図書館" and printed[1].strip() == "中央図書館"
    assert "2027年4月1日(木) 10:30" in printed
    assert "   返却期限 2027年4月15日(木)" in printed and "利用者 ****0000" in printed
    assert any("TEST-0001" in line for line in printed) and "これはテスト印字です。" in printed
    # The screen shows the same lines the printer got.
    shown = html.unescape(r.text.split('<pre class="sample"', 1)[1].split(">", 1)[1].split("</pre>", 1)[0])
    assert shown.split("\n") == printed
    details = seeded.execute("SELECT details FROM audit_log WHERE action = 'workstation.test_print'").fetchone()[
        "details"]
    assert details == {"printer": f"127.0.0.1:{port}", "printed": True, "error": None}


def test_test_print_to_a_closed_port_shows_the_error(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/workstations", csrf, {**WORKSTATION, "host": "127.0.0.1",
                                                            "port": str(port), "timeout": "2"}).status_code == 303
    r = post(staff_client, "/admin/workstations/east-1/test-print", csrf)
    assert r.status_code == 200
    page = text_of(r.text)
    assert f"レシートプリンター（127.0.0.1:{port}）に印刷できません：プリンターが接続を拒否しました" in page
    assert "Traceback" not in r.text and "ConnectionRefusedError" not in r.text
    en = post(staff_client, "/admin/workstations/east-1/test-print?lang=en", csrf)
    assert f"Cannot print on receipt printer 127.0.0.1:{port}: the printer refused the connection" in text_of(en.text)
    # Without a printer the screen says so.
    assert post(staff_client, "/admin/workstations/east-1", csrf,
                {"name": "東カウンター", "branch": "east", "connection": "none"}).status_code == 303
    none = post(staff_client, "/admin/workstations/east-1/test-print?lang=ja", csrf)
    assert "この端末にはレシートプリンターが設定されていません。" in text_of(none.text)
    outcomes = [r["details"]["printed"] for r in seeded.execute(
        "SELECT details FROM audit_log WHERE action = 'workstation.test_print' ORDER BY id").fetchall()]
    assert outcomes == [False, False, False]


def test_usb_and_file_printers_are_stored_as_circulation_reads_them(staff_client: TestClient,
                                                                     seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/workstations", csrf,
                {**WORKSTATION, "code": "usb-1", "connection": "usb", "usb_vendor": "04B8", "usb_product": "0x0e15",
                 "host": "leftover.example"}).status_code == 303
    stored = seeded.execute("SELECT printer FROM workstation WHERE code = 'usb-1'").fetchone()["printer"]
    assert stored == {"connection": "usb", "usb_vendor": "04b8", "usb_product": "0e15", "width": 42, "timeout": 3.0}
    settings = PrinterSettings.from_dict(stored)
    assert (settings.usb_vendor, settings.usb_product) == (0x04B8, 0x0E15)
    page = staff_client.get("/admin/workstations/usb-1").text
    assert 'value="04b8"' in page and 'value="0e15"' in page
    assert "USB 04b8:0e15" in staff_client.get("/admin/workstations").text
    assert post(staff_client, "/admin/workstations", csrf,
                {**WORKSTATION, "code": "file-1", "connection": "file", "path": "/dev/usb/lp0",
                 "width": "48"}).status_code == 303
    stored = seeded.execute("SELECT printer FROM workstation WHERE code = 'file-1'").fetchone()["printer"]
    assert stored == {"connection": "file", "path": "/dev/usb/lp0", "width": 48, "timeout": 3.0}


# -- patron categories ------------------------------------------------------------------------------------------------

def test_patron_categories(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    assert post(staff_client, "/admin/patron-categories", csrf, {**CATEGORY, "is_group": "on"}).status_code == 303
    listed = text_of(staff_client.get("/admin/patron-categories").text)
    assert "student 学生 Student 団体貸出 4 年" in listed
    r = post(staff_client, "/admin/patron-categories/student", csrf, {"name": "学生（市内）", "card_years": "2",
                                                                     "code": "other"})
    assert r.status_code == 303
    row = seeded.execute("SELECT * FROM patron_category WHERE code = 'student'").fetchone()
    assert (row["name"], row["name_en"], row["is_group"], row["card_years"]) == ("学生（市内）", None, False, 2)
    assert seeded.execute("SELECT count(*) AS n FROM patron_category WHERE code = 'other'").fetchone()["n"] == 0
    # The new category is offered by the loan rules screen at once.
    assert 'value="student"' in staff_client.get("/admin/loan-rules").text
    assert staff_client.get("/admin/patron-categories/nobody").status_code == 404
