"""貸出設定の管理: the loan rules (貸出規則), branch calendars (開館日カレンダー), barcode ranges (バーコード番号帯),
counter workstations (カウンター端末) and patron categories (利用者区分), as the admin screens edit them.

Form input arrives as text: the parse_* / *_from_form functions (pure) turn it into values or raise
validation_error naming the field and the value, before anything is written. Every change runs in one
transaction together with its audit row.
"""

from __future__ import annotations

import calendar as calendar_module
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.audit import Actor, record
from api.barcodes import nw7
from api.barcodes.nw7 import BarcodeRule
from api.calendar.days import BranchCalendar, PlannedDay, YearPattern, nth_weekday_matches, plan_year
from api.circulation import rules as loan_rules
from api.circulation.rules import LoanRule, NoRule
from api.circulation.service import load_calendar, load_rules
from api.errors import ShokaError, invalid, not_found
from devices.printers import PrinterError, PrinterSettings, Receipt, ReceiptLine, render_escpos, render_text, send

DB = Connection[DictRow]
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
WEEKDAYS_JA = ("月", "火", "水", "木", "金", "土", "日")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_VIEW_MONTHS = 12
YEARS = (2000, 2099)  # what the bulk entry accepts: national holidays are known for these


# -- parsing form text (pure) ---------------------------------------------------------------------

def parse_int(field: str, text: str, low: int, high: int, what_ja: str, what_en: str, *,
              optional: bool = False) -> int | None:
    """An integer from a form field, low..high; '' gives None when optional."""
    value = unicodedata.normalize("NFKC", text or "").strip()  # 全角数字 typed with an IME
    if not value and optional:
        return None
    if not re.fullmatch(r"-?[0-9]{1,9}", value) or not low <= int(value) <= high:
        raise invalid(field, text, f"{what_ja}は {low}〜{high} の整数で入力してください。",
                      f"{what_en} must be a whole number from {low} to {high}")
    return int(value)


def required_int(field: str, text: str, low: int, high: int, what_ja: str, what_en: str) -> int:
    value = parse_int(field, text, low, high, what_ja, what_en)
    assert value is not None
    return value


def parse_date(field: str, text: str, *, optional: bool = False) -> date | None:
    value = (text or "").strip()
    if not value and optional:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(field, text, "日付は 2027-04-01 の形で入力してください。", "use the form 2027-04-01") from None


def parse_code(field: str, text: str) -> str:
    value = (text or "").strip()
    if not CODE_RE.match(value):
        raise invalid(field, text, "英小文字・数字・_・- で32文字以内にしてください（先頭は英小文字か数字）。",
                      "use lower-case letters, digits, '_' or '-', at most 32 characters")
    return value


def parse_name(field: str, text: str, *, optional: bool = False, limit: int = 100) -> str:
    value = (text or "").strip()
    if not value and not optional:
        raise invalid(field, text, "名前を入力してください。", "a name is required")
    if len(value) > limit:
        raise invalid(field, text, f"{limit}文字以内で入力してください。", f"at most {limit} characters")
    return value


def checked(text: str | None) -> bool:
    """An HTML checkbox: sent as "on" (or a value) when ticked, absent when not."""
    return (text or "").strip().lower() in ("on", "1", "true", "yes")


def _optional_code(text: str) -> str | None:
    value = (text or "").strip()
    return value or None


# -- loan rules (貸出規則) --------------------------------------------------------------------------

@dataclass(frozen=True)
class Choices:
    """What the selects offer: (code, name, name_en) of categories, item types and branches."""

    categories: list[DictRow]
    item_types: list[DictRow]
    branches: list[DictRow]


def choices(conn: DB) -> Choices:
    return Choices(
        conn.execute("SELECT code, name, name_en, is_group FROM patron_category ORDER BY code").fetchall(),
        conn.execute("SELECT code, name, name_en, loanable FROM item_type ORDER BY code").fetchall(),
        conn.execute("SELECT id, code, name, name_en FROM branch ORDER BY id").fetchall())


def rule_from_form(values: Mapping[str, str], rule_id: int | None = None) -> LoanRule:
    """A loan rule from the form: '' for a key means すべて (None)."""
    v = values.get
    return LoanRule(
        patron_category=_optional_code(v("patron_category", "")),
        item_type=_optional_code(v("item_type", "")),
        branch=_optional_code(v("branch", "")),
        loan_days=required_int("loan_days", v("loan_days", ""), 1, 366, "貸出期間（日）", "loan_days"),
        max_loans=required_int("max_loans", v("max_loans", ""), 0, 9999, "貸出冊数", "max_loans"),
        max_loans_of_type=parse_int("max_loans_of_type", v("max_loans_of_type", ""), 0, 9999,
                                    "資料区分ごとの貸出冊数", "max_loans_of_type", optional=True),
        renewals=required_int("renewals", v("renewals", ""), 0, 99, "延長回数", "renewals"),
        renewal_days=required_int("renewal_days", v("renewal_days", ""), 1, 366, "延長期間（日）", "renewal_days"),
        max_holds=required_int("max_holds", v("max_holds", ""), 0, 9999, "予約件数", "max_holds"),
        fixed_due_date=parse_date("fixed_due_date", v("fixed_due_date", ""), optional=True),
        loanable=checked(v("loanable")),
        id=rule_id)


def _key(rule: LoanRule) -> tuple[str | None, str | None, str | None]:
    return rule.patron_category, rule.item_type, rule.branch


FALLBACK_KEY: tuple[None, None, None] = (None, None, None)


def _branch_id(conn: DB, code: str, field: str = "branch") -> int:
    row = conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise invalid(field, code, "その館コードはありません。", "no such branch code")
    return int(row["id"])


def _check_rule_keys(conn: DB, patron_category: str | None, item_type: str | None, branch: str | None) -> None:
    if patron_category is not None and not conn.execute(
            "SELECT 1 FROM patron_category WHERE code = %s", (patron_category,)).fetchone():
        raise invalid("patron_category", patron_category, "その利用者区分はありません。", "no such patron category")
    if item_type is not None and not conn.execute("SELECT 1 FROM item_type WHERE code = %s", (item_type,)).fetchone():
        raise invalid("item_type", item_type, "その資料区分はありません。", "no such item type")
    if branch is not None:
        _branch_id(conn, branch)


def _duplicate(rule: LoanRule) -> ShokaError:
    ja, en = loan_rules.describe_key(*_key(rule))
    return ShokaError("duplicate_rule", f"同じ条件の貸出規則が既にあります（{ja}）。",
                      f"A loan rule for {en} already exists.", status=409, field="patron_category")


def _rule_details(rule: LoanRule) -> dict[str, Any]:
    out = asdict(rule)
    out.pop("id")
    out["fixed_due_date"] = rule.fixed_due_date.isoformat() if rule.fixed_due_date else None
    return out


def save_loan_rule(conn: DB, actor: Actor, rule: LoanRule) -> int:
    """Add a rule (rule.id None) or replace one. Refuses unknown keys, a second rule with the same key, what
    rule_problems finds wrong with this rule, and moving the fallback rule (すべて・すべて・すべて) elsewhere."""
    with conn.transaction():
        _check_rule_keys(conn, *_key(rule))
        current = load_rules(conn)
        if rule.id is None:
            index = len(current)
            candidate = [*current, rule]
        else:
            index = next((i for i, r in enumerate(current) if r.id == rule.id), -1)
            if index < 0:
                raise not_found("loan_rule", str(rule.id))
            if _key(current[index]) == FALLBACK_KEY and _key(rule) != FALLBACK_KEY:
                raise ShokaError("fallback_rule_required",
                                 "既定の規則（すべて・すべて・すべて）の条件は変更できません。期間や冊数だけを変更してください。",
                                 "The fallback rule (any, any, any) must keep its key; change its values only.",
                                 status=409, field="patron_category")
            candidate = [*current[:index], rule, *current[index + 1:]]
        if any(_key(r) == _key(rule) for i, r in enumerate(candidate) if i != index):
            raise _duplicate(rule)
        for problem in loan_rules.rule_problems(candidate):
            if problem.index != index:
                continue
            if problem.code == "max_loans_of_type_without_item_type":
                raise invalid("max_loans_of_type", rule.max_loans_of_type,
                              "資料区分ごとの上限は資料区分を指定した規則にだけ設定できます。",
                              "max_loans_of_type needs an item type")
            raise ShokaError("invalid_loan_rule", problem.message_ja, problem.message_en, status=422,
                             field=problem.code)
        values = {"patron_category": rule.patron_category, "item_type": rule.item_type,
                  "branch_id": _branch_id(conn, rule.branch) if rule.branch else None,
                  "loan_days": rule.loan_days, "max_loans": rule.max_loans, "max_loans_of_type": rule.max_loans_of_type,
                  "renewals": rule.renewals, "renewal_days": rule.renewal_days, "max_holds": rule.max_holds,
                  "fixed_due_date": rule.fixed_due_date, "loanable": rule.loanable}
        try:
            with conn.transaction():  # a savepoint: a concurrent twin turns into the same refusal
                if rule.id is None:
                    columns = ", ".join(values)
                    placeholders = ", ".join(f"%({k})s" for k in values)
                    row = conn.execute(f"INSERT INTO loan_rule ({columns}) VALUES ({placeholders}) RETURNING id",
                                       values).fetchone()
                    assert row is not None
                    rule_id = int(row["id"])
                else:
                    sets = ", ".join(f"{k} = %({k})s" for k in values)
                    conn.execute(f"UPDATE loan_rule SET {sets} WHERE id = %(id)s", {**values, "id": rule.id})
                    rule_id = rule.id
        except psycopg.errors.UniqueViolation:
            raise _duplicate(rule) from None
        action = "loan_rule.create" if rule.id is None else "loan_rule.update"
        record(conn, actor, action, "loan_rule", rule_id, _rule_details(rule))
        return rule_id


def get_loan_rule(conn: DB, rule_id: int) -> LoanRule:
    for rule in load_rules(conn):
        if rule.id == rule_id:
            return rule
    raise not_found("loan_rule", str(rule_id))


def delete_loan_rule(conn: DB, actor: Actor, rule_id: int) -> None:
    """Delete a rule; the fallback rule stays (without it a loan that no other rule matches is refused)."""
    with conn.transaction():
        row = conn.execute("SELECT patron_category, item_type, branch_id FROM loan_rule WHERE id = %s FOR UPDATE",
                           (rule_id,)).fetchone()
        if row is None:
            raise not_found("loan_rule", str(rule_id))
        if row["patron_category"] is None and row["item_type"] is None and row["branch_id"] is None:
            raise ShokaError("fallback_rule_required",
                             "既定の規則（すべて・すべて・すべて）は削除できません。どの規則にも当たらない貸出に使われます。",
                             "The fallback rule (any, any, any) cannot be deleted: loans no other rule matches use it.",
                             status=409)
        rule = get_loan_rule(conn, rule_id)
        conn.execute("DELETE FROM loan_rule WHERE id = %s", (rule_id,))
        record(conn, actor, "loan_rule.delete", "loan_rule", rule_id, _rule_details(rule))


@dataclass(frozen=True)
class RuleTrial:
    """What the "which rule applies?" tester (適用される規則の確認) shows."""

    patron_category: str
    item_type: str
    branch: str
    today: date
    rule: LoanRule
    rule_number: int  # 1-based, as the rule list numbers them
    limit: LoanRule
    limit_number: int
    due_date: date
    item_type_loanable: bool


def try_rule(conn: DB, patron_category: str, item_type: str, branch: str, today: date) -> RuleTrial:
    """The rule circulation would apply to a loan, and the due date it gives `today` on the branch's calendar."""
    for field, value in (("try_category", patron_category), ("try_item_type", item_type), ("try_branch", branch)):
        if not value:
            raise invalid(field, value, "選択してください。", "choose one")
    _check_rule_keys(conn, patron_category, item_type, branch)
    rules = load_rules(conn)
    rule = loan_rules.resolve_rule(rules, patron_category, item_type, branch)
    limit = loan_rules.limit_rule(rules, patron_category, branch)
    due = loan_rules.due_date(rule, today, load_calendar(conn, _branch_id(conn, branch), today))
    type_row = conn.execute("SELECT loanable FROM item_type WHERE code = %s", (item_type,)).fetchone()
    assert type_row is not None
    return RuleTrial(patron_category, item_type, branch, today, rule, rules.index(rule) + 1, limit,
                     rules.index(limit) + 1, due, bool(type_row["loanable"]))


@dataclass(frozen=True)
class MatrixCell:
    rule_number: int | None  # None: no rule matches (no fallback)
    rule: LoanRule | None


def effective_matrix(rules: Sequence[LoanRule], categories: Sequence[str], item_types: Sequence[str],
                     branch: str) -> list[list[MatrixCell]]:
    """The rule each category (rows) × item type (columns) gets at `branch`: the matrix as the counter sees it."""
    out: list[list[MatrixCell]] = []
    for category in categories:
        row = []
        for item_type in item_types:
            try:
                rule = loan_rules.resolve_rule(rules, category, item_type, branch)
            except NoRule:
                row.append(MatrixCell(None, None))
                continue
            row.append(MatrixCell(list(rules).index(rule) + 1, rule))
        out.append(row)
    return out


# -- branch calendars (開館日カレンダー) -----------------------------------------------------------

def describe_monthly(nth: int, weekday: int) -> tuple[str, str]:
    """(ja, en): 第2木曜日 / 2nd Thursday; 最終木曜日 / last Thursday."""
    day_ja, day_en = WEEKDAYS_JA[weekday], WEEKDAYS_EN[weekday]
    if nth == -1:
        return f"最終{day_ja}曜日", f"last {day_en}"
    if nth < 0:
        return f"最後から{-nth}番目の{day_ja}曜日", f"{_ordinal(-nth)} last {day_en}"
    return f"第{nth}{day_ja}曜日", f"{_ordinal(nth)} {day_en}"


def _ordinal(n: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(n, "th")
    return f"{n}{suffix}"


def parse_weekdays(values: Iterable[str], field: str = "weekly_closed") -> frozenset[int]:
    out = set()
    for text in values:
        out.add(required_int(field, text, 0, 6, "曜日", "weekday"))
    return frozenset(out)


MONTHLY_NTHS = (1, 2, 3, 4, 5, -1, -2)


def parse_monthly(nths: Sequence[str], weekdays: Sequence[str]) -> frozenset[tuple[int, int]]:
    """Pairs of 第n and 曜日 from the form's rows; a row with either left blank is skipped."""
    out = set()
    for nth_text, weekday_text in zip(nths, weekdays, strict=False):
        if not (nth_text or "").strip() or not (weekday_text or "").strip():
            continue
        nth = required_int("monthly_nth", nth_text, -5, 5, "第n", "nth")
        if nth not in (1, 2, 3, 4, 5, -1, -2, -3, -4, -5):
            raise invalid("monthly_nth", nth_text, "第n は 1〜5 か -1（最終）です。", "nth is 1 to 5 or -1 (last)")
        out.add((nth, required_int("monthly_weekday", weekday_text, 0, 6, "曜日", "weekday")))
    return frozenset(out)


def parse_month_day(field: str, text: str) -> tuple[int, int]:
    """'12-29', '12/29' or '12月29日' → (12, 29)."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*[-/月]\s*(\d{1,2})\s*日?\s*", text or "")
    if match:
        month, day = int(match.group(1)), int(match.group(2))
        try:
            date(2000, month, day)
            return month, day
        except ValueError:
            pass
    raise invalid(field, text, "月日は 12-29 の形で入力してください。", "give month and day as 12-29")


def year_pattern_from_form(values: Mapping[str, str], weekly: Sequence[str], monthly_nths: Sequence[str],
                           monthly_weekdays: Sequence[str]) -> tuple[int, YearPattern, bool]:
    """(year, pattern, replace) from the 年間一括登録 form."""
    year = required_int("year", values.get("year", ""), YEARS[0], YEARS[1], "年", "year")
    closure = None
    if checked(values.get("new_year")):
        closure = (parse_month_day("new_year_from", values.get("new_year_from", "")),
                   parse_month_day("new_year_to", values.get("new_year_to", "")))
    pattern = YearPattern(
        weekly_closed=parse_weekdays(weekly),
        close_on_national_holidays=checked(values.get("close_on_national_holidays")),
        open_on_holiday_falling_on_weekly_closure=checked(values.get("open_on_holiday")),
        new_year_closure=closure,
        monthly_closed=parse_monthly(monthly_nths, monthly_weekdays))
    return year, pattern, checked(values.get("replace"))


@dataclass(frozen=True)
class BranchCalendarSettings:
    branch: str
    branch_id: int
    name: str
    name_en: str | None
    weekly_closed: frozenset[int]
    monthly_closed: frozenset[tuple[int, int]]


def _branch_row(conn: DB, branch: str) -> DictRow:
    row = conn.execute("SELECT id, code, name, name_en FROM branch WHERE code = %s", (branch,)).fetchone()
    if row is None:
        raise not_found("branch", branch)
    return row


def calendar_settings(conn: DB, branch: str) -> BranchCalendarSettings:
    b = _branch_row(conn, branch)
    row = conn.execute("SELECT weekly_closed, monthly_closed FROM branch_calendar WHERE branch_id = %s",
                       (b["id"],)).fetchone()
    weekly = frozenset(int(d) for d in row["weekly_closed"]) if row else frozenset()
    monthly = frozenset((int(n), int(w)) for n, w in row["monthly_closed"]) if row else frozenset()
    return BranchCalendarSettings(b["code"], int(b["id"]), b["name"], b["name_en"], weekly, monthly)


def list_calendars(conn: DB, today: date) -> list[dict[str, Any]]:
    """Every branch with its weekly and monthly closures and how many dated entries lie ahead."""
    rows = conn.execute(
        """SELECT b.code, b.name, b.name_en, coalesce(c.weekly_closed, '{}') AS weekly_closed,
                  coalesce(c.monthly_closed, '[]'::jsonb) AS monthly_closed,
                  (SELECT count(*) FROM calendar_day d WHERE d.branch_id = b.id AND d.day >= %s) AS upcoming,
                  (SELECT max(day) FROM calendar_day d WHERE d.branch_id = b.id) AS last_day
           FROM branch b LEFT JOIN branch_calendar c ON c.branch_id = b.id ORDER BY b.id""", (today,)).fetchall()
    return [{**r, "weekly_closed": sorted(r["weekly_closed"]),
             "monthly_closed": sorted((int(n), int(w)) for n, w in r["monthly_closed"])} for r in rows]


def calendar_entries(conn: DB, branch_id: int, start: date, end: date) -> list[DictRow]:
    return conn.execute("SELECT day, closed, reason FROM calendar_day WHERE branch_id = %s AND day BETWEEN %s AND %s "
                        "ORDER BY day", (branch_id, start, end)).fetchall()


def _save_pattern(conn: DB, branch_id: int, weekly: frozenset[int], monthly: frozenset[tuple[int, int]]) -> None:
    conn.execute(
        """INSERT INTO branch_calendar (branch_id, weekly_closed, monthly_closed) VALUES (%s, %s, %s)
           ON CONFLICT (branch_id) DO UPDATE SET weekly_closed = EXCLUDED.weekly_closed,
                                                 monthly_closed = EXCLUDED.monthly_closed""",
        (branch_id, sorted(weekly), Jsonb([list(p) for p in sorted(monthly)])))


def save_pattern(conn: DB, actor: Actor, branch: str, weekly: frozenset[int],
                 monthly: frozenset[tuple[int, int]]) -> None:
    """定期休館日 and 月例休館日 of a branch."""
    YearPattern(weekly_closed=weekly, monthly_closed=monthly)  # refuses 7 closed weekdays, bad pairs
    with conn.transaction():
        b = _branch_row(conn, branch)
        _save_pattern(conn, int(b["id"]), weekly, monthly)
        record(conn, actor, "calendar.pattern", "branch", branch,
               {"weekly_closed": sorted(weekly), "monthly_closed": [list(p) for p in sorted(monthly)]})


_UPSERT_DAY = """INSERT INTO calendar_day (branch_id, day, closed, reason) VALUES (%s, %s, %s, %s)
                  ON CONFLICT (branch_id, day) DO UPDATE SET closed = EXCLUDED.closed, reason = EXCLUDED.reason"""


def set_calendar_day(conn: DB, actor: Actor, branch: str, day: date, closed: bool, reason: str) -> None:
    """A dated closure (臨時休館) or opening (臨時開館); replaces an entry for the same day."""
    reason = parse_name("reason", reason, optional=True)
    with conn.transaction():
        b = _branch_row(conn, branch)
        conn.execute(_UPSERT_DAY, (b["id"], day, closed, reason))
        record(conn, actor, "calendar.day_set", "branch", branch,
               {"day": day.isoformat(), "closed": closed, "reason": reason})


def remove_calendar_day(conn: DB, actor: Actor, branch: str, day: date) -> None:
    with conn.transaction():
        b = _branch_row(conn, branch)
        gone = conn.execute("DELETE FROM calendar_day WHERE branch_id = %s AND day = %s RETURNING closed, reason",
                            (b["id"], day)).fetchone()
        if gone is None:
            raise not_found("calendar_day", f"{branch} {day.isoformat()}")
        record(conn, actor, "calendar.day_remove", "branch", branch,
               {"day": day.isoformat(), "closed": gone["closed"], "reason": gone["reason"]})


@dataclass(frozen=True)
class PreviewDay:
    """One planned entry, with what is stored for that day now (None: nothing)."""

    planned: PlannedDay
    stored_closed: bool | None
    stored_reason: str

    @property
    def changes(self) -> bool:
        return self.stored_closed != self.planned.closed or self.stored_reason != self.planned.reason


def year_preview(conn: DB, branch: str, year: int, pattern: YearPattern) -> list[PreviewDay]:
    """What 年間一括登録 would write, beside what is stored now."""
    b = _branch_row(conn, branch)
    stored = {r["day"]: r for r in calendar_entries(conn, int(b["id"]), date(year, 1, 1), date(year, 12, 31))}
    out = []
    for planned in plan_year(year, pattern):
        row = stored.get(planned.day)
        out.append(PreviewDay(planned, row["closed"] if row else None, row["reason"] if row else ""))
    return out


def apply_year(conn: DB, actor: Actor, branch: str, year: int, pattern: YearPattern, *, replace: bool = False) -> int:
    """Write the year's plan: upsert a calendar_day row per planned day and set the branch's weekly and monthly
    closures to the pattern's (the plan is only right with them). With `replace`, the year's other dated
    entries are removed first. Returns the number of days written."""
    planned = plan_year(year, pattern)
    with conn.transaction():
        b = _branch_row(conn, branch)
        branch_id = int(b["id"])
        removed = 0
        if replace:
            removed = conn.execute("DELETE FROM calendar_day WHERE branch_id = %s AND day BETWEEN %s AND %s",
                                   (branch_id, date(year, 1, 1), date(year, 12, 31))).rowcount
        with conn.cursor() as cur:
            cur.executemany(_UPSERT_DAY, [(branch_id, p.day, p.closed, p.reason) for p in planned])
        _save_pattern(conn, branch_id, pattern.weekly_closed, pattern.monthly_closed)
        closure = pattern.new_year_closure
        record(conn, actor, "calendar.year_apply", "branch", branch, {
            "year": year, "weekly_closed": sorted(pattern.weekly_closed),
            "monthly_closed": [list(p) for p in sorted(pattern.monthly_closed)],
            "close_on_national_holidays": pattern.close_on_national_holidays,
            "open_on_holiday_falling_on_weekly_closure": pattern.open_on_holiday_falling_on_weekly_closure,
            "new_year_closure": [list(closure[0]), list(closure[1])] if closure else None,
            "replace": replace, "removed": removed, "written": len(planned)})
    return len(planned)


@dataclass(frozen=True)
class DayCell:
    day: date
    closed: bool
    reason_ja: str
    reason_en: str
    today: bool = False


@dataclass(frozen=True)
class MonthView:
    year: int
    month: int
    weeks: tuple[tuple[DayCell | None, ...], ...]  # Sunday first, None outside the month

    @property
    def closed_days(self) -> int:
        return sum(1 for week in self.weeks for cell in week if cell is not None and cell.closed)


def day_state(calendar: BranchCalendar, reasons: Mapping[date, str], day: date) -> tuple[bool, str, str]:
    """(closed, reason ja, reason en) in the precedence BranchCalendar.is_open uses."""
    stored = reasons.get(day, "")
    if day in calendar.closed_dates:
        return True, stored or "臨時休館", stored or "special closure"
    if day in calendar.open_dates:
        return False, stored or "臨時開館", stored or "open by exception"
    if day.weekday() in calendar.weekly_closed:
        return True, "定期休館日", "weekly closing day"
    for nth, weekday in sorted(calendar.monthly_closed):
        if nth_weekday_matches(day, nth, weekday):
            ja, en = describe_monthly(nth, weekday)
            return True, f"休館日（{ja}）", f"monthly closing day ({en})"
    return False, "", ""


def month_views(calendar: BranchCalendar, reasons: Mapping[date, str], start: date,
                months: int = MONTH_VIEW_MONTHS, today: date | None = None) -> list[MonthView]:
    """Month tables from start's month on, Sunday first as Japanese calendars are printed."""
    grid = calendar_module.Calendar(firstweekday=6)
    out = []
    year, month = start.year, start.month
    for _ in range(months):
        weeks = []
        for week in grid.monthdatescalendar(year, month):
            cells: list[DayCell | None] = []
            for day in week:
                if day.month != month:
                    cells.append(None)
                    continue
                closed, ja, en = day_state(calendar, reasons, day)
                cells.append(DayCell(day, closed, ja, en, day == today))
            weeks.append(tuple(cells))
        out.append(MonthView(year, month, tuple(weeks)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def calendar_months(conn: DB, settings: BranchCalendarSettings, today: date,
                    months: int = MONTH_VIEW_MONTHS) -> list[MonthView]:
    start = today.replace(day=1)
    end = (start.replace(day=28) + timedelta(days=31 * months)).replace(day=1)
    rows = calendar_entries(conn, settings.branch_id, start, end)
    calendar = BranchCalendar(settings.weekly_closed, settings.monthly_closed,
                              frozenset(r["day"] for r in rows if r["closed"]),
                              frozenset(r["day"] for r in rows if not r["closed"]))
    return month_views(calendar, {r["day"]: r["reason"] for r in rows}, start, months, today)


# -- barcode ranges (バーコード番号帯) -------------------------------------------------------------

def describe_barcode_rule(rule: BarcodeRule, lang: str = "ja") -> str:
    """nw7.describe_rule in Japanese; the same in English for the English screens."""
    if lang != "en":
        return nw7.describe_rule(rule)
    parts = [f"prefix {rule.prefix!r}" if rule.prefix else "any prefix",
             f"{rule.length} characters" if rule.length is not None else "any length",
             nw7.SCHEME_NAMES_EN[rule.check_scheme],
             f"branch {rule.branch}" if rule.branch is not None else "all branches"]
    kind = "item barcodes" if rule.kind == "item" else "patron cards"
    name = f" {rule.name!r}" if rule.name else ""
    return f"{kind}{name}: " + ", ".join(parts)


@dataclass(frozen=True)
class BarcodeRuleRow:
    id: int
    rule: BarcodeRule

    @property
    def description(self) -> str:
        return nw7.describe_rule(self.rule)

    @property
    def description_en(self) -> str:
        return describe_barcode_rule(self.rule, "en")


def list_barcode_rules(conn: DB) -> list[BarcodeRuleRow]:
    rows = conn.execute(
        """SELECT r.id, r.kind, r.name, r.prefix, r.length, r.check_scheme, b.code AS branch
           FROM barcode_rule r LEFT JOIN branch b ON b.id = r.branch_id ORDER BY r.kind, r.prefix, r.id""").fetchall()
    return [BarcodeRuleRow(int(r["id"]), BarcodeRule(kind=r["kind"], name=r["name"], prefix=r["prefix"],
                                                     length=r["length"], check_scheme=r["check_scheme"],
                                                     branch=r["branch"])) for r in rows]


def get_barcode_rule(conn: DB, rule_id: int) -> BarcodeRuleRow:
    for row in list_barcode_rules(conn):
        if row.id == rule_id:
            return row
    raise not_found("barcode_rule", str(rule_id))


def barcode_rule_from_form(values: Mapping[str, str]) -> BarcodeRule:
    v = values.get
    kind = (v("kind", "") or "").strip()
    if kind not in nw7.KINDS:
        raise invalid("kind", kind, "種別は item（資料）か patron（利用者カード）です。", "kind is item or patron")
    name = parse_name("name", v("name", ""), optional=True)
    prefix = (v("prefix", "") or "").strip()
    if prefix and not re.fullmatch(r"[0-9A-Za-z-]{1,31}", prefix):
        raise invalid("prefix", prefix, "先頭の文字は英数字とハイフンで31文字以内です。",
                      "letters, digits and '-', at most 31 characters")
    length = parse_int("length", v("length", ""), 1, nw7.MAX_LENGTH, "桁数", "length", optional=True)
    scheme = (v("check_scheme", "") or "none").strip()
    if scheme not in nw7.CHECK_SCHEMES:
        raise invalid("check_scheme", scheme, "チェックデジットの方式を一覧から選んでください。",
                      "choose a check-digit scheme from the list")
    if length is not None and len(prefix) > length:
        raise invalid("length", v("length", ""), f"先頭「{prefix}」より短い桁数です。",
                      f"shorter than the prefix {prefix!r}")
    if length is not None and scheme != "none" and length < 2:
        raise invalid("length", v("length", ""), "チェックデジットがある番号は2桁以上です。",
                      "a number with a check digit has at least 2 characters")
    try:
        return BarcodeRule(kind=kind, name=name, prefix=prefix, length=length,
                           check_scheme=scheme, branch=_optional_code(v("branch", "")))
    except ValueError as error:
        raise invalid("prefix", prefix, "番号帯の設定が正しくありません。", str(error)) from None


def _barcode_taken(rule: BarcodeRule) -> ShokaError:
    kind_ja = nw7.KIND_JA[rule.kind]
    return ShokaError("barcode_rule_taken", f"{kind_ja}で先頭「{rule.prefix}」の番号帯は既にあります。",
                      f"There is already a {rule.kind} range with prefix {rule.prefix!r}.", status=409,
                      field="prefix")


def _barcode_details(rule: BarcodeRule) -> dict[str, Any]:
    return {**asdict(rule), "description": nw7.describe_rule(rule)}


def save_barcode_rule(conn: DB, actor: Actor, rule: BarcodeRule, rule_id: int | None = None) -> int:
    """Add a number range, or replace one. (kind, prefix, branch, length) is unique."""
    with conn.transaction():
        branch_id = _branch_id(conn, rule.branch) if rule.branch else None
        values = (rule.kind, rule.name, rule.prefix, rule.length, rule.check_scheme, branch_id)
        try:
            with conn.transaction():
                if rule_id is None:
                    row = conn.execute(
                        """INSERT INTO barcode_rule (kind, name, prefix, length, check_scheme, branch_id)
                           VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""", values).fetchone()
                else:
                    row = conn.execute(
                        """UPDATE barcode_rule SET kind = %s, name = %s, prefix = %s, length = %s, check_scheme = %s,
                                  branch_id = %s WHERE id = %s RETURNING id""", (*values, rule_id)).fetchone()
        except psycopg.errors.UniqueViolation:
            raise _barcode_taken(rule) from None
        if row is None:
            raise not_found("barcode_rule", str(rule_id))
        new_id = int(row["id"])
        record(conn, actor, "barcode_rule.create" if rule_id is None else "barcode_rule.update", "barcode_rule",
               new_id, _barcode_details(rule))
        return new_id


def delete_barcode_rule(conn: DB, actor: Actor, rule_id: int) -> None:
    with conn.transaction():
        row = get_barcode_rule(conn, rule_id)
        conn.execute("DELETE FROM barcode_rule WHERE id = %s", (rule_id,))
        record(conn, actor, "barcode_rule.delete", "barcode_rule", rule_id, _barcode_details(row.rule))


@dataclass(frozen=True)
class ScanOutcome:
    """parse_scan's answer for one field: the accepted code, or its refusal."""

    code: str | None
    matched: BarcodeRule | None  # the range the code falls in (match_rule)
    error: ShokaError | None


@dataclass(frozen=True)
class ScanTrial:
    raw: str
    branch: str | None
    stripped: str
    classified: str | None  # "item", "patron" or None (classify)
    item: ScanOutcome
    patron: ScanOutcome
    rules_in_force: int


def try_scan(conn: DB, raw: str, branch: str | None) -> ScanTrial:
    """What the counter would make of a scan, as an item barcode and as a patron card, at `branch`."""
    if branch:
        _branch_id(conn, branch, "scan_branch")
    rules = nw7.rules_for_branch([r.rule for r in list_barcode_rules(conn)], branch or None)
    outcomes = {}
    stripped = nw7.strip_scanner_chars(raw)
    for kind in nw7.KINDS:
        matched = nw7.match_rule(stripped, rules, kind)
        try:
            outcomes[kind] = ScanOutcome(nw7.parse_scan(raw, rules, kind), matched, None)
        except ShokaError as error:
            outcomes[kind] = ScanOutcome(None, matched, error)
    return ScanTrial(raw, branch or None, stripped, nw7.classify(raw, rules), outcomes["item"], outcomes["patron"],
                     len(rules))


# -- counter workstations (カウンター端末) --------------------------------------------------------

PRINTER_FIELDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "network": ("host", "port"),
    "usb": ("usb_vendor", "usb_product"),
    "file": ("path",),
}


def printer_from_form(values: Mapping[str, str]) -> PrinterSettings:
    """The printer settings of the form; only the fields of the chosen connection are read."""
    connection = (values.get("connection", "") or "").strip()
    data: dict[str, Any] = {"connection": connection}
    for key in (*PRINTER_FIELDS.get(connection, ()), "width", "timeout"):
        data[key] = (values.get(key, "") or "").strip()
    return PrinterSettings.from_dict(data)


def printer_json(settings: PrinterSettings) -> dict[str, Any]:
    """As stored in workstation.printer: what PrinterSettings.from_dict reads back; USB ids as hex."""
    out: dict[str, Any] = {"connection": settings.connection}
    for key in PRINTER_FIELDS[settings.connection]:
        value = getattr(settings, key)
        out[key] = f"{value:04x}" if key.startswith("usb_") else value
    out["width"] = settings.width
    out["timeout"] = settings.timeout
    return out


def printer_form_values(stored: Mapping[str, Any]) -> dict[str, str]:
    """Stored settings as the form shows them (USB ids in hex)."""
    try:
        settings = PrinterSettings.from_dict(stored)
    except ShokaError:
        return {k: str(v) for k, v in stored.items()}
    out = {k: "" if v is None else str(v) for k, v in asdict(settings).items()}
    for key in ("usb_vendor", "usb_product"):
        value = getattr(settings, key)
        out[key] = f"{value:04x}" if value is not None else ""
    return out


def printer_label(stored: Mapping[str, Any]) -> str:
    """The printer as staff know it ("192.0.2.10:9100", "USB 04b8:0202", "none"); the stored text when invalid."""
    try:
        return PrinterSettings.from_dict(stored).describe()
    except ShokaError:
        return str(dict(stored))


def list_workstations(conn: DB) -> list[dict[str, Any]]:
    rows = conn.execute("""SELECT w.id, w.code, w.name, b.code AS branch, b.name AS branch_name, w.printer
                           FROM workstation w JOIN branch b ON b.id = w.branch_id ORDER BY b.id, w.code""").fetchall()
    return [{**r, "printer_label": printer_label(r["printer"])} for r in rows]


def get_workstation(conn: DB, code: str) -> DictRow:
    row = conn.execute("""SELECT w.id, w.code, w.name, b.code AS branch, b.name AS branch_name, w.printer
                          FROM workstation w JOIN branch b ON b.id = w.branch_id WHERE w.code = %s""",
                       (code,)).fetchone()
    if row is None:
        raise not_found("workstation", code)
    return row


def save_workstation(conn: DB, actor: Actor, code: str, name: str, branch: str, printer: PrinterSettings, *,
                     create: bool) -> None:
    """Register a counter workstation (create) or change one; the code stays."""
    code = parse_code("code", code)
    name = parse_name("name", name)
    stored = printer_json(printer)
    with conn.transaction():
        branch_id = _branch_id(conn, branch)
        if create:
            if conn.execute("SELECT 1 FROM workstation WHERE code = %s", (code,)).fetchone():
                raise ShokaError("workstation_exists", f"端末コード「{code}」は既にあります。",
                                 f"Workstation {code!r} already exists.", status=409, field="code")
            conn.execute("INSERT INTO workstation (code, name, branch_id, printer) VALUES (%s, %s, %s, %s)",
                         (code, name, branch_id, Jsonb(stored)))
        elif conn.execute("UPDATE workstation SET name = %s, branch_id = %s, printer = %s WHERE code = %s",
                          (name, branch_id, Jsonb(stored), code)).rowcount == 0:
            raise not_found("workstation", code)
        record(conn, actor, "workstation.create" if create else "workstation.update", "workstation", code,
               {"name": name, "branch": branch, "printer": stored})


def sample_receipt(library_name: str, branch_name: str, printed_at: datetime, lang: str = "ja") -> Receipt:
    """The receipt a test print (テスト印字) sends: kanji, kana, ASCII and a due date, like a real one."""
    day = printed_at.date()
    return Receipt(
        kind="checkout", library_name=library_name, branch_name=branch_name, printed_at=printed_at,
        patron_label="****0000",
        lines=(ReceiptLine("テスト印字　吾輩は猫である", "TEST-0001", day + timedelta(days=14)),
               ReceiptLine("Test print: The Tale of Genji", "TEST-0002", day + timedelta(days=14), "予約あり")),
        footer="これはテスト印字です。\nThis is a test print.", lang="en" if lang == "en" else "ja")


@dataclass(frozen=True)
class TestPrint:
    __test__ = False  # pytest: a result, not a test class

    printer: str
    printed: bool
    lines: list[str]
    error: ShokaError | None = None


def send_test_print(conn: DB, actor: Actor, code: str, library_name: str, now: datetime, lang: str = "ja") -> TestPrint:
    """Send the sample receipt to the workstation's printer. A printer that fails answers printed=False with
    the PrinterError (which names the printer and the reason); nothing else is caught."""
    ws = get_workstation(conn, code)
    settings = PrinterSettings.from_dict(ws["printer"])
    receipt = sample_receipt(library_name, ws["branch_name"], now, lang)
    lines = render_text(receipt, settings.width)
    error: ShokaError | None = None
    try:
        send(render_escpos(receipt, settings.width), settings)
    except PrinterError as exc:
        error = exc
    with conn.transaction():
        record(conn, actor, "workstation.test_print", "workstation", code,
               {"printer": settings.describe(), "printed": error is None,
                "error": error.message_en if error else None})
    return TestPrint(settings.describe(), error is None, lines, error)


# -- patron categories (利用者区分) ------------------------------------------------------------------

@dataclass(frozen=True)
class PatronCategory:
    code: str
    name: str
    name_en: str | None = None
    is_group: bool = False
    card_years: int = 3


def category_from_form(values: Mapping[str, str], code: str | None = None) -> PatronCategory:
    """`code` is given when editing (the code of a category never changes: patrons and rules name it)."""
    return PatronCategory(
        code=parse_code("code", code if code is not None else values.get("code", "")),
        name=parse_name("name", values.get("name", "")),
        name_en=parse_name("name_en", values.get("name_en", ""), optional=True) or None,
        is_group=checked(values.get("is_group")),
        card_years=required_int("card_years", values.get("card_years", ""), 1, 20, "有効期間（年）", "card_years"))


def list_patron_categories(conn: DB) -> list[DictRow]:
    return conn.execute(
        """SELECT c.code, c.name, c.name_en, c.is_group, c.card_years,
                  (SELECT count(*) FROM patron p WHERE p.category = c.code) AS patrons,
                  (SELECT count(*) FROM loan_rule r WHERE r.patron_category = c.code) AS rules
           FROM patron_category c ORDER BY c.code""").fetchall()


def get_patron_category(conn: DB, code: str) -> PatronCategory:
    row = conn.execute("SELECT code, name, name_en, is_group, card_years FROM patron_category WHERE code = %s",
                       (code,)).fetchone()
    if row is None:
        raise not_found("patron_category", code)
    return PatronCategory(**row)


def save_patron_category(conn: DB, actor: Actor, category: PatronCategory, *, create: bool) -> None:
    details = asdict(category)
    with conn.transaction():
        if create:
            if conn.execute("SELECT 1 FROM patron_category WHERE code = %s", (category.code,)).fetchone():
                raise ShokaError("patron_category_exists", f"利用者区分「{category.code}」は既にあります。",
                                 f"Patron category {category.code!r} already exists.", status=409, field="code")
            conn.execute("""INSERT INTO patron_category (code, name, name_en, is_group, card_years)
                            VALUES (%(code)s, %(name)s, %(name_en)s, %(is_group)s, %(card_years)s)""", details)
        elif conn.execute("""UPDATE patron_category SET name = %(name)s, name_en = %(name_en)s, is_group = %(is_group)s,
                                    card_years = %(card_years)s WHERE code = %(code)s""", details).rowcount == 0:
            raise not_found("patron_category", category.code)
        record(conn, actor, "patron_category.create" if create else "patron_category.update", "patron_category",
               category.code, details)


__all__ = [
    "BarcodeRuleRow",
    "BranchCalendarSettings",
    "Choices",
    "DayCell",
    "MatrixCell",
    "MonthView",
    "PatronCategory",
    "PreviewDay",
    "RuleTrial",
    "ScanOutcome",
    "ScanTrial",
    "TestPrint",
    "apply_year",
    "barcode_rule_from_form",
    "calendar_months",
    "calendar_settings",
    "category_from_form",
    "choices",
    "day_state",
    "delete_barcode_rule",
    "delete_loan_rule",
    "describe_barcode_rule",
    "describe_monthly",
    "effective_matrix",
    "get_barcode_rule",
    "get_loan_rule",
    "get_patron_category",
    "get_workstation",
    "list_barcode_rules",
    "list_calendars",
    "list_patron_categories",
    "list_workstations",
    "month_views",
    "parse_monthly",
    "parse_weekdays",
    "printer_form_values",
    "printer_from_form",
    "printer_json",
    "remove_calendar_day",
    "rule_from_form",
    "sample_receipt",
    "save_barcode_rule",
    "save_loan_rule",
    "save_patron_category",
    "save_pattern",
    "save_workstation",
    "send_test_print",
    "set_calendar_day",
    "try_rule",
    "try_scan",
    "year_pattern_from_form",
    "year_preview",
]
