"""The staff console and the OPAC in a real browser: Debian's Chromium driven by Playwright.

End to end (sign in by keyboard, with and without JavaScript, then find the sign-in in the audit log),
keyboard use (autofocus, skip link) and axe-core accessibility checks against WCAG 2.1 A and AA.

Both apps are served by uvicorn on free local ports, on the same embedded PostgreSQL and Valkey as the
rest of the suite. Chromium is never downloaded here: we use /usr/bin/chromium (`apt-get install
chromium`; script/test installs it when run as root). Without it the whole module is skipped, loudly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.config import Settings
from tests.conftest import CHROMIUM, PASSWORDS, Served

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"browser tests were NOT run: {CHROMIUM} is missing. Install Debian's Chromium "
                "(sudo apt-get install chromium) or run script/test as root, which installs it.",
                allow_module_level=True)

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect

WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
NAV_LABELS = ("貸出・返却", "利用者", "資料", "予約", "統計", "管理")
TIMEOUT_MS = 15_000


# -- servers ------------------------------------------------------------------------------------

@dataclass
class Sites:
    staff: str
    opac: str


@pytest.fixture
def sites(seeded: psycopg.Connection, settings: Settings, db_url: str, opac_db_url: str,
          redis_url: str, tmp_path: Path) -> Iterator[Sites]:
    from api.app import create_staff_app
    from indexer.sync import apply_outbox
    from indexer.tantivy_engine import TantivyEngine
    from opac.app import create_opac_app

    # One catalogued title with a copy, so result lists, record and item pages have content.
    with seeded.transaction():
        rid = seeded.execute(
            "INSERT INTO bib_record (source, control_number, title, title_reading, pub_year, ndc, data) "
            "VALUES ('JTNDL', '1', '図書館の歴史', 'トショカン ノ レキシ', 2001, '010.2', %s) RETURNING id",
            (Jsonb({"title": "図書館の歴史", "title_reading": "トショカン ノ レキシ", "year": 2001,
                    "authors": [{"name": "山田, 花子", "reading": "ヤマダ, ハナコ"}]}),)).fetchone()["id"]
        seeded.execute("INSERT INTO item (id, record_id, barcode, branch_id, current_branch_id, item_type, "
                       "call_number) OVERRIDING SYSTEM VALUE SELECT 1, %s, '9000001', id, id, 'book', '010.2/ト' "
                       "FROM branch WHERE code = 'main'", (rid,))
        seeded.execute("SELECT setval(pg_get_serial_sequence('item', 'id'), (SELECT max(id) FROM item))")
        seeded.execute("""INSERT INTO patron (id, card, name, name_reading, reading_key, category, home_branch_id,
                                              expires_on)
                          OVERRIDING SYSTEM VALUE SELECT 1, 'B0001', '閲覧 太郎', 'エツラン タロウ', 'エツランタロウ',
                                 'general', id, current_date + 365 FROM branch WHERE code = 'main'""")
        seeded.execute("SELECT setval(pg_get_serial_sequence('patron', 'id'), 1)")
        seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (rid,))
    local = replace(settings, data_dir=tmp_path)
    apply_outbox(seeded, TantivyEngine(local.index_dir))
    staff_app = create_staff_app(local, db_url, redis_url)
    opac_app = create_opac_app(local, opac_db_url, redis_url)
    with Served(staff_app) as staff, Served(opac_app) as opac:
        yield Sites(staff.url, opac.url)


# -- browser ------------------------------------------------------------------------------------

@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="ja-JP")
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, staff: str, username: str = "admin") -> None:
    """Sign in through the login form, by label and keyboard, as a person would."""
    page.goto(f"{staff}/login")
    page.get_by_label("ユーザーID", exact=True).fill(username)
    page.get_by_label("パスワード", exact=True).fill(PASSWORDS[username])
    page.get_by_label("パスワード", exact=True).press("Enter")
    page.wait_for_url(f"{staff}/")


def audit_rows(page: Page) -> list[list[str]]:
    rows = page.locator("table.list tbody tr")
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in rows.all()]


# -- a. end to end --------------------------------------------------------------------------------

def test_sign_in_by_keyboard_then_find_it_in_the_audit_log(page: Page, sites: Sites) -> None:
    page.goto(f"{sites.staff}/")
    expect(page).to_have_url(f"{sites.staff}/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("職員ログイン")

    page.get_by_label("ユーザーID", exact=True).fill("admin")
    page.get_by_label("パスワード", exact=True).fill(PASSWORDS["admin"])
    page.keyboard.press("Enter")

    expect(page).to_have_url(f"{sites.staff}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("ようこそ、管理者 さん")
    nav = page.get_by_role("navigation", name="業務メニュー")
    for label in NAV_LABELS:
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()

    nav.get_by_role("link", name="管理", exact=True).click()
    expect(page).to_have_url(f"{sites.staff}/admin")
    page.get_by_role("link", name=re.compile("^操作ログ")).click()
    expect(page).to_have_url(f"{sites.staff}/audit")
    expect(page.get_by_role("heading", level=1)).to_have_text("操作ログ")
    logins = [r for r in audit_rows(page) if r[3] == "auth.login"]
    assert logins, f"no auth.login row on the audit page: {audit_rows(page)}"
    assert logins[0][1] == "admin" and logins[0][2] == "127.0.0.1", logins  # 職員, 端末


def test_sign_in_works_without_javascript(browser: Browser, sites: Sites) -> None:
    context = browser.new_context(java_script_enabled=False, locale="ja-JP")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{sites.staff}/audit")
        expect(page).to_have_url(f"{sites.staff}/login?next=/audit")
        page.get_by_label("ユーザーID", exact=True).fill("admin")
        page.get_by_label("パスワード", exact=True).fill(PASSWORDS["admin"])
        page.get_by_label("パスワード", exact=True).press("Enter")  # implicit submission: no script needed
        expect(page).to_have_url(f"{sites.staff}/audit")
        nav = page.get_by_role("navigation", name="業務メニュー")
        for label in NAV_LABELS:
            expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
        assert any(r[3] == "auth.login" and r[1] == "admin" for r in audit_rows(page)), audit_rows(page)

        page.get_by_role("button", name="ログアウト").click()
        expect(page).to_have_url(f"{sites.staff}/login?msg=logged_out")
        expect(page.get_by_role("status")).to_have_text("ログアウトしました。")
    finally:
        context.close()


def test_wrong_password_is_announced_and_keeps_the_user_id(page: Page, sites: Sites) -> None:
    page.goto(f"{sites.staff}/login")
    page.get_by_label("ユーザーID", exact=True).fill("admin")
    page.get_by_label("パスワード", exact=True).fill("wrong-password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("ユーザーIDまたはパスワードが違います")
    user = page.get_by_label("ユーザーID", exact=True)
    expect(user).to_have_value("admin")
    expect(user).to_have_accessible_description(re.compile("ユーザーIDまたはパスワードが違います"))


# -- b. keyboard ----------------------------------------------------------------------------------

def test_login_page_focuses_the_user_id(page: Page, sites: Sites) -> None:
    page.goto(f"{sites.staff}/login")
    expect(page.get_by_label("ユーザーID", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("パスワード", exact=True)).to_be_focused()


def _first_tab_reaches_skip_link(page: Page) -> None:
    skip = page.get_by_role("link", name="本文へ移動")
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0, f"the focused skip link is off screen: {box}"
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


STAFF_PAGES = ["/", "/audit", "/admin", "/admin/staff", "/admin/staff/new", "/admin/staff/counter", "/admin/roles",
               "/admin/assignments", "/admin/branches", "/circulation", "/catalogue?q=%E5%9B%B3%E6%9B%B8%E9%A4%A8",
               "/catalogue/records/1", "/catalogue/records/1/edit", "/catalogue/items/9000001",
               "/circulation/checkout", "/circulation/checkin", "/circulation/renew", "/circulation/groups",
               "/patrons", "/patrons/new", "/patrons/1", "/patrons/1/edit",
               "/admin/loan-rules", "/admin/loan-rules/1", "/admin/calendars", "/admin/calendars/main",
               "/admin/barcodes", "/admin/workstations", "/admin/patron-categories",
               "/admin/patron-categories/general"]


def test_first_tab_reaches_the_skip_link(page: Page, sites: Sites) -> None:
    sign_in(page, sites.staff)
    for path in STAFF_PAGES:
        page.goto(f"{sites.staff}{path}")
        if page.locator("main [autofocus]").count():
            # Counter screens start in the scan field, already past the navigation the skip link bypasses.
            assert page.evaluate("document.querySelector('main').contains(document.activeElement)"), path
            continue
        _first_tab_reaches_skip_link(page)


def test_first_tab_on_the_login_page_reaches_the_skip_link(page: Page, sites: Sites) -> None:
    page.goto(f"{sites.staff}/login")
    expect(page.get_by_label("ユーザーID", exact=True)).to_be_focused()  # autofocus
    # Back to the top of the page: click on empty page background (bottom right, beside the centred form).
    viewport = page.viewport_size or {"width": 1280, "height": 720}
    page.mouse.click(viewport["width"] - 5, viewport["height"] - 5)
    expect(page.get_by_label("ユーザーID", exact=True)).not_to_be_focused()
    _first_tab_reaches_skip_link(page)


# -- c. axe-core, WCAG 2.1 A and AA --------------------------------------------------------------

def _axe_report(items: list[dict[str, Any]]) -> str:
    lines = []
    for v in items:
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']} — {v['helpUrl']}")
        for node in v["nodes"]:
            lines.append(f"      {', '.join(map(str, node['target']))}")
            if node.get("failureSummary"):
                lines.append("        " + node["failureSummary"].replace("\n", "\n        "))
    return "\n".join(lines)


# axe-core leaves colour contrast undecided for content that is only symbols or a single character (the ●/－
# marks of the permission table). Those were checked by hand: the page's ink #1b1b1b on white, 17:1.
CONTRAST_NOT_TEXT = {"nonBmp", "shortTextContent"}


def _needs_review(item: dict[str, Any]) -> dict[str, Any] | None:
    """An "incomplete" axe result minus the nodes reviewed by hand (CONTRAST_NOT_TEXT); None if none remain."""
    nodes = item["nodes"]
    if item["id"] == "color-contrast":
        nodes = [n for n in nodes if not all(c.get("data", {}).get("messageKey") in CONTRAST_NOT_TEXT
                                             for c in n["any"] + n["all"] + n["none"])]
    return {**item, "nodes": nodes} if nodes else None


def axe_problems(page: Page) -> str:
    """Runs axe-core on the page as it is now; returns a readable report of its findings, or "" if none.

    Besides violations, results axe could not decide ("incomplete": a human must review them) count too:
    the first of them found here was a real defect (aria-label on a plain span). No rule is disabled.
    """
    response = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA},
                                        "resultTypes": ["violations", "incomplete"]}).response
    assert response["passes"], f"axe-core checked nothing on {page.url}: did it run?"
    report = []
    if response["violations"]:
        report.append(f"{page.url}: {len(response['violations'])} violation(s) of WCAG 2.1 A/AA "
                      f"(axe-core {response['testEngine']['version']}):\n{_axe_report(response['violations'])}")
    undecided = [item for item in map(_needs_review, response["incomplete"]) if item]
    if undecided:
        report.append(f"{page.url}: {len(undecided)} result(s) axe-core could not decide; review and fix the "
                      f"page, or, if it is fine, say why next to CONTRAST_NOT_TEXT:\n{_axe_report(undecided)}")
    return "\n".join(report)


def test_axe_finds_a_known_defect(page: Page) -> None:
    """The checker itself works in this browser: a low-contrast paragraph and an unlabelled field are found."""
    page.set_content('<!doctype html><html lang="ja"><head><title>t</title></head><body><main>'
                     '<p style="color:#bbb">薄い文字</p><input name="q"></main></body></html>')
    response = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}}).response
    assert {v["id"] for v in response["violations"]} >= {"color-contrast", "label"}, _axe_report(
        response["violations"])


OPAC_PAGES = ["/", "/?lang=en", "/search?q=%E5%9B%B3%E6%9B%B8%E9%A4%A8", "/search?lang=en", "/no-such-page",
              "/search?q=%E3%81%A8%E3%81%97%E3%82%87%E3%81%8B%E3%82%93&lang=en", "/records/1", "/new",
              "/search?q=%E9%87%8F%E5%AD%90%E5%8A%9B%E5%AD%A6"]


def test_opac_pages_are_accessible(page: Page, sites: Sites) -> None:
    problems = []
    for path in OPAC_PAGES:
        page.goto(f"{sites.opac}{path}")
        expect(page.locator("main")).to_be_visible()
        problems.append(axe_problems(page))
    report = "\n".join(p for p in problems if p)
    assert not report, "\n" + report


def test_staff_login_page_is_accessible(page: Page, sites: Sites) -> None:
    problems = []
    for lang, user_id in (("ja", "ユーザーID"), ("en", "User ID")):
        page.goto(f"{sites.staff}/login?lang={lang}")
        problems.append(axe_problems(page))
        page.get_by_label(user_id, exact=True).fill("admin")
        page.locator("#password").fill("wrong-password")
        page.keyboard.press("Enter")
        expect(page.get_by_role("alert")).to_be_visible()  # the page again, with the error message
        problems.append(axe_problems(page))
    page.goto(f"{sites.staff}/login?expired=1&lang=ja")
    problems.append(axe_problems(page))
    report = "\n".join(p for p in problems if p)
    assert not report, "\n" + report


def test_staff_pages_are_accessible(page: Page, sites: Sites) -> None:
    sign_in(page, sites.staff)
    problems = []
    for lang in ("ja", "en"):
        for path in [*STAFF_PAGES, "/audit?action=auth.login", "/no-such-page"]:
            page.goto(f"{sites.staff}{path}{'&' if '?' in path else '?'}lang={lang}")
            expect(page.locator("main")).to_be_visible()
            problems.append(axe_problems(page))
    report = "\n".join(p for p in problems if p)
    assert not report, "\n" + report


# -- d. the circulation counter, keyboard only ----------------------------------------------------------

def _scan(page: Page, code: str) -> None:
    """What a keyboard-wedge scanner does: type the code into whatever has the focus, then Enter."""
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    page.wait_for_load_state("domcontentloaded")


def _tab_to(page: Page, name: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.textContent.trim()") == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_counter_session_by_keyboard_only(page: Page, sites: Sites, seeded: psycopg.Connection,
                                         network_printer: Any) -> None:
    from devices.printers import decode_escpos

    printer, received = network_printer, network_printer.received
    with seeded.transaction():
        rid = seeded.execute("SELECT id FROM bib_record LIMIT 1").fetchone()["id"]
        seeded.execute("""INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type)
                          SELECT %s, b, br.id, br.id, t FROM branch br,
                          (VALUES ('C001', 'book'), ('C002', 'book'), ('C003', 'reference')) v(b, t)
                          WHERE br.code = 'main'""", (rid,))
        seeded.execute("""INSERT INTO patron (card, name, name_reading, reading_key, category, home_branch_id,
                                              expires_on)
                          SELECT 'P001', '図書 花子', 'トショ ハナコ', 'トショハナコ', 'general', id,
                                 current_date + 365 FROM branch WHERE code = 'main'""")
        seeded.execute("INSERT INTO workstation (code, name, branch_id, printer) SELECT 'main-1', '中央1', id, %s "
                       "FROM branch WHERE code = 'main'",
                       (Jsonb({"connection": "network", "host": "127.0.0.1", "port": printer.server_address[1]}),))
    sign_in(page, sites.staff, "counter")
    page.goto(f"{sites.staff}/circulation")
    page.get_by_text("この端末の設定").click()
    page.get_by_label("カウンター端末").select_option("main-1")
    page.get_by_role("button", name="設定").click()
    expect(page).to_have_url(f"{sites.staff}/circulation/checkout")
    expect(page.get_by_label("利用者カード")).to_be_focused()

    _scan(page, "P001")
    expect(page.get_by_role("heading", level=2, name=re.compile("図書 花子"))).to_be_visible()
    item_field = page.get_by_label("資料バーコード")
    expect(item_field).to_be_focused()
    _scan(page, "C001")
    expect(page.locator(".alert-ok")).to_contain_text("貸出しました")
    expect(page.locator("body")).to_have_attribute("data-played", "ok")
    expect(item_field).to_be_focused()
    _scan(page, "C003")  # a reference book: refused, in the error colour and sound
    expect(page.locator(".alert-error")).to_contain_text("貸出できません")
    expect(page.locator("body")).to_have_attribute("data-played", "error")
    expect(item_field).to_be_focused()
    assert axe_problems(page) == ""
    _scan(page, "C002")
    expect(page.locator(".alert-ok")).to_contain_text("貸出しました")
    expect(page.locator("tr.just-now")).to_have_count(2)

    _tab_to(page, "レシートを印刷して終了")
    page.keyboard.press("Enter")
    expect(page.locator(".alert-ok")).to_contain_text("レシートを印刷しました")
    text = "\n".join(decode_escpos(received[-1]))
    assert "貸出レシート" in text and "図書館の歴史" in text and text.count("資料番号") == 2
    expect(page.get_by_label("利用者カード")).to_be_focused()  # ready for the next patron

    page.goto(f"{sites.staff}/circulation/checkin")
    expect(page.get_by_label("資料バーコード")).to_be_focused()
    _scan(page, "C001")
    expect(page.locator(".alert-ok")).to_contain_text("返却しました")
    page.goto(f"{sites.staff}/circulation/renew")
    _scan(page, "C002")
    expect(page.locator(".alert-ok")).to_contain_text("延長しました")
    _scan(page, "C002")  # one renewal allowed by the default rule
    expect(page.locator(".alert-error")).to_contain_text("延長")
    expect(page.get_by_label("資料バーコード")).to_be_focused()
    loans = seeded.execute("SELECT count(*) FILTER (WHERE returned_at IS NULL) AS open, count(*) AS all "
                           "FROM loan").fetchone()
    assert (loans["open"], loans["all"]) == (1, 2)
