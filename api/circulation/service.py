"""Check-out (貸出), check-in (返却) and renewal (延長).

Consistency under concurrency rests on row locks taken in one order: the patron row first (so the
limits hold when one patron is served at two counters at once), then the item row (so two counters
scanning the same item produce exactly one loan). Check-in and renewal lock only the item. The
partial unique index `loan_open_item` stands behind the locks.

What is recorded: the loan row (with the statistics snapshot) and one `circulation_event` without
the patron. Check-outs are not written to the audit log: that would keep who read what for six
years, beyond the loan's anonymisation (api/circulation/anonymise.py). Overrides are audited, without
the patron.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.barcodes.nw7 import BarcodeRule, classify, parse_scan, rules_for_branch
from api.calendar.days import BranchCalendar
from api.circulation import rules as loan_rules
from api.circulation.policy import Policy
from api.circulation.policy import current as current_policy
from api.circulation.rules import LoanRule
from api.errors import ShokaError, invalid
from api.patrons.service import Standing, age_group, standing

DB = Connection[DictRow]

# Refusals a counter clerk may override after seeing them (Koha: "override" with the reason shown).
OVERRIDABLE = frozenset({"limit_reached", "patron_has_overdue", "patron_expired"})

STATUS_JA = {
    "available": "貸出可", "on_loan": "貸出中", "in_transit": "回送中", "on_hold_shelf": "予約確保中",
    "in_processing": "整理中", "missing": "不明", "lost": "紛失", "damaged": "破損", "withdrawn": "除籍済み",
}
STATUS_EN = {
    "available": "available", "on_loan": "on loan", "in_transit": "in transit", "on_hold_shelf": "on the hold shelf",
    "in_processing": "in processing", "missing": "missing", "lost": "lost", "damaged": "damaged",
    "withdrawn": "withdrawn",
}


def refusal(code: str, ja: str, en: str, status: int = 409, field: str | None = None) -> ShokaError:
    return ShokaError(code, ja, en, status=status, field=field)


# -- hooks for holds (予約) ------------------------------------------------------------------------

@dataclass(frozen=True)
class HoldInfo:
    """A hold an item is wanted for, as the counter needs to know it."""

    id: int
    pickup_branch: str
    status: str                 # 'in_transit' or 'on_shelf'
    patron_id: int | None = None


def _holds() -> Any:
    from api.holds import service as holds  # holds build on circulation: imported when first needed

    return holds


@dataclass
class HoldHooks:
    """Where the holds domain (api/holds/service.py) plugs into circulation; replaceable in tests.

    - `waiting_for`: the hold an item on the hold shelf is kept for (check-out to anyone else is refused);
    - `holds_waiting`: how many holds wait on the loan's record/item (renewal is refused when any);
    - `trap`: at check-in, decide whether the item fills a hold; it may change the item's status and
      returns the hold (the check-in answer carries it);
    - `fulfilled`: after a check-out, the patron's own hold on that title is collected (returns its id).
    """

    waiting_for: Callable[[DB, DictRow], HoldInfo | None] = lambda conn, item: _holds().waiting_for(conn, item)
    holds_waiting: Callable[[DB, int, int], int] = (
        lambda conn, record_id, item_id: _holds().holds_waiting(conn, record_id, item_id))
    trap: Callable[[DB, DictRow, int], HoldInfo | None] = (
        lambda conn, item, branch_id: _holds().trap(conn, item, branch_id))
    fulfilled: Callable[[DB, int, DictRow], int | None] = (
        lambda conn, patron_id, item: _holds().fulfilled(conn, patron_id, item))


hooks = HoldHooks()


# -- loading the policy ---------------------------------------------------------------------------

def branch_id(conn: DB, code: str) -> int:
    row = conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise invalid("branch", code, "その館コードはありません。", "no such branch code")
    return int(row["id"])


def load_rules(conn: DB) -> list[LoanRule]:
    rows = conn.execute(
        """SELECT r.id, r.patron_category, r.item_type, b.code AS branch, r.loan_days, r.max_loans,
                  r.max_loans_of_type, r.renewals, r.renewal_days, r.max_holds, r.fixed_due_date, r.loanable
           FROM loan_rule r LEFT JOIN branch b ON b.id = r.branch_id ORDER BY r.id""").fetchall()
    return [LoanRule(**dict(r)) for r in rows]


def load_calendar(conn: DB, branch: int, start: date, days: int = 400) -> BranchCalendar:
    """The branch's calendar from `start` on (enough for any loan or renewal period)."""
    pattern = conn.execute("SELECT weekly_closed, monthly_closed FROM branch_calendar WHERE branch_id = %s",
                           (branch,)).fetchone()
    rows = conn.execute("SELECT day, closed FROM calendar_day WHERE branch_id = %s AND day BETWEEN %s AND %s",
                        (branch, start, start + timedelta(days=days))).fetchall()
    return BranchCalendar(
        weekly_closed=frozenset(pattern["weekly_closed"]) if pattern else frozenset(),
        monthly_closed=frozenset((int(n), int(w)) for n, w in pattern["monthly_closed"]) if pattern else frozenset(),
        closed_dates=frozenset(r["day"] for r in rows if r["closed"]),
        open_dates=frozenset(r["day"] for r in rows if not r["closed"]))


def counter_branch(conn: DB, requested: str | None, staff_branch: str | None,
                   policy: Policy | None = None) -> tuple[int, str]:
    """The counter's branch: the one asked for, else the staff member's own."""
    code = requested or staff_branch
    if not code:
        raise invalid("branch", "", "カウンターの館を指定してください。", "say which branch this counter is at")
    if policy is not None:
        if code not in policy.branches:
            raise invalid("branch", code, "その館コードはありません。", "no such branch code")
        return policy.branches[code], code
    return branch_id(conn, code), code


# -- scanning -------------------------------------------------------------------------------------

def _scan(raw: str, barcode_rules: list[BarcodeRule], expect: str) -> str:
    return parse_scan(raw, barcode_rules, expect)  # type: ignore[arg-type]


def _unknown_item(conn: DB, code: str, barcode_rules: list[BarcodeRule]) -> ShokaError:
    """An item barcode that matches no item: say so, or recognise a patron card scanned by mistake."""
    if classify(code, barcode_rules) == "patron" or conn.execute(
            "SELECT 1 FROM patron WHERE card = %s", (code,)).fetchone():
        return refusal("patron_barcode_in_item_field",
                       f"item: 「{code}」は利用者カードの番号です。資料のバーコードを読み取ってください。",
                       f"item: {code!r} is a patron card number; scan the item's barcode.", 422, "item")
    return refusal("unknown_item", f"item: 資料番号「{code}」の資料はありません。読み取り直してください。",
                   f"item: no item with barcode {code!r}; scan it again.", 404, "item")


def _unknown_patron(conn: DB, code: str, barcode_rules: list[BarcodeRule]) -> ShokaError:
    if classify(code, barcode_rules) == "item" or conn.execute(
            "SELECT 1 FROM item WHERE barcode = %s", (code,)).fetchone():
        return refusal("item_barcode_in_patron_field",
                       f"patron: 「{code}」は資料のバーコードです。利用者カードを読み取ってください。",
                       f"patron: {code!r} is an item barcode; scan the patron's card.", 422, "patron")
    return refusal("unknown_patron", f"patron: 利用者番号「{code}」の利用者はいません。",
                   f"patron: no patron with card {code!r}.", 404, "patron")


# -- patron standing --------------------------------------------------------------------------------

def patron_refusals(standing: Standing, today: date) -> list[ShokaError]:
    """Every reason the patron may not borrow today, most serious first (pure)."""
    out: list[ShokaError] = []
    manual = [b.reason for b in standing.blocks if b.kind == "manual" and b.active_on(today)]
    if manual:
        reasons = "、".join(manual)
        out.append(refusal("patron_blocked", f"この利用者は貸出が止められています（{reasons}）。",
                           f"This patron is blocked ({reasons}).", field="patron"))
    suspensions = [b for b in standing.blocks if b.kind == "suspension" and b.active_on(today)]
    if suspensions:
        ends = [b.ends_on for b in suspensions]
        until = "—" if None in ends else max(e for e in ends if e is not None).isoformat()
        out.append(refusal("patron_suspended", f"貸出停止中です（{until} まで）。",
                           f"Lending is suspended until {until}.", field="patron"))
    if standing.expires_on is not None and standing.expires_on < today:
        out.append(refusal("patron_expired",
                           f"利用者カードの有効期限（{standing.expires_on.isoformat()}）が切れています。更新してください。",
                           f"The card expired on {standing.expires_on.isoformat()}; renew it first.", field="patron"))
    if standing.overdue_loans:
        out.append(refusal("patron_has_overdue", f"返却期限を過ぎた資料が {standing.overdue_loans} 点あります。",
                           f"The patron has {standing.overdue_loans} overdue item(s).", field="patron"))
    return out


# -- check-out --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckoutResult:
    loan_id: int
    due_date: date
    item: str
    title: str
    already_on_loan_to_patron: bool = False   # a double scan: nothing changed
    overridden: tuple[str, ...] = ()
    hold_collected: int | None = None


_PATRON_SQL = """SELECT p.id, p.card, p.category, p.birth_date, p.expires_on, p.home_branch_id, c.is_group
                 FROM patron p JOIN patron_category c ON c.code = p.category WHERE p.card = %s"""
_ITEM_SQL = """SELECT i.id, i.record_id, i.barcode, i.branch_id, i.current_branch_id, i.item_type, i.status,
                      r.title, r.ndc, t.loanable AS type_loanable, b.code AS home_branch
               FROM item i JOIN bib_record r ON r.id = i.record_id JOIN item_type t ON t.code = i.item_type
               JOIN branch b ON b.id = i.branch_id
               WHERE i.barcode = %s"""


def _item_refusal(item: DictRow) -> ShokaError | None:
    status = item["status"]
    if status in ("available", "on_loan", "on_hold_shelf"):
        if not item["type_loanable"]:
            return refusal("item_not_loanable", "この資料は貸出できません（禁帯出）。",
                           "This item is not for loan (reference only).", field="item")
        return None
    if status == "in_transit":
        return refusal("item_in_transit", "この資料は回送中です。先に返却処理をしてください。",
                       "This item is in transit; check it in first.", field="item")
    return refusal("item_not_loanable", f"この資料は「{STATUS_JA[status]}」のため貸出できません。",
                   f"This item cannot be lent: it is {STATUS_EN[status]}.", field="item")


def checkout(conn: DB, actor: Actor, patron_card: str, item_barcode: str, *, branch: str | None = None,
             staff_branch: str | None = None, today: date | None = None,
             override: Iterable[str] = ()) -> CheckoutResult:
    """貸出: lend one item to one patron at the counter's branch."""
    today = today or date.today()
    overrides = set(override)
    bad = overrides - OVERRIDABLE
    if bad:
        raise invalid("override", sorted(bad)[0], "この警告は解除できません。", "this refusal cannot be overridden")
    policy = current_policy(conn)
    barcode_rules = list(rules_for_branch(policy.barcode_rules, branch or staff_branch))
    card = _scan(patron_card, barcode_rules, "patron")
    code = _scan(item_barcode, barcode_rules, "item")
    with conn.transaction():
        counter_id, counter_code = counter_branch(conn, branch, staff_branch, policy)
        patron = conn.execute(_PATRON_SQL + " FOR UPDATE OF p", (card,)).fetchone()
        if patron is None:
            raise _unknown_patron(conn, card, barcode_rules)
        item = conn.execute(_ITEM_SQL + " FOR UPDATE OF i", (code,)).fetchone()
        if item is None:
            raise _unknown_item(conn, code, barcode_rules)
        open_loan = conn.execute("SELECT id, patron_id, due_date FROM loan WHERE item_id = %s AND returned_at IS NULL",
                                 (item["id"],)).fetchone()
        if open_loan is not None:
            if open_loan["patron_id"] == patron["id"]:
                return CheckoutResult(open_loan["id"], open_loan["due_date"], code, item["title"],
                                      already_on_loan_to_patron=True)
            raise refusal("item_on_loan",
                          f"資料「{code}」は他の利用者に貸出中です。返却処理をしてから貸し出してください。",
                          f"Item {code!r} is on loan to another patron; check it in first.", field="item")
        problem = _item_refusal(item)
        if problem is not None:
            raise problem
        hold = None
        if item["status"] == "on_hold_shelf":
            hold = hooks.waiting_for(conn, item)
            if hold is not None and hold.patron_id != patron["id"]:
                raise refusal("hold_waiting", "この資料は他の利用者の予約で確保されています。",
                              "This item is kept on the hold shelf for another patron.", field="item")
        applied: list[str] = []
        for problem in patron_refusals(standing(conn, patron["id"], today), today):
            if problem.code not in overrides:
                raise problem
            applied.append(problem.code)
        rule = loan_rules.resolve_rule(policy.rules, patron["category"], item["item_type"], counter_code)
        if not rule.loanable:
            raise refusal("item_not_loanable", "貸出規則により、この利用者区分にはこの資料を貸出できません。",
                          "The loan rules do not allow lending this item to this patron category.", field="item")
        counts = conn.execute(
            """SELECT count(*) AS total, count(*) FILTER (WHERE item_type = %s) AS of_type
               FROM loan WHERE patron_id = %s AND returned_at IS NULL""", (item["item_type"], patron["id"])).fetchone()
        assert counts is not None
        try:
            loan_rules.check_limits(policy.rules, patron["category"], item["item_type"], counter_code,
                                    int(counts["total"]), int(counts["of_type"]))
        except ShokaError as exc:
            if exc.code not in overrides:
                raise
            applied.append(exc.code)
        due = loan_rules.due_date(rule, today, policy.calendar(conn, counter_id, today))
        group = age_group(patron["birth_date"], today)
        row = conn.execute(
            """INSERT INTO loan (item_id, patron_id, branch_id, due_date, patron_category, age_group, item_type)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (item["id"], patron["id"], counter_id, due, patron["category"], group, item["item_type"])).fetchone()
        assert row is not None
        conn.execute("UPDATE item SET status = 'on_loan', current_branch_id = %s, updated_at = now() WHERE id = %s",
                     (counter_id, item["id"]))
        _event(conn, "checkout", counter_id, patron["category"], group, item, patron["is_group"])
        if item["status"] == "available" or item["status"] == "on_hold_shelf":
            conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (item["record_id"],))
        collected = hooks.fulfilled(conn, patron["id"], item)
        if applied:
            record(conn, actor, "loan.override", "item", code, {"overridden": applied, "branch": counter_code})
        return CheckoutResult(int(row["id"]), due, code, item["title"], overridden=tuple(applied),
                              hold_collected=collected)


def _event(conn: DB, kind: str, branch: int, category: str | None, group: str | None, item: DictRow,
           is_group: bool) -> None:
    conn.execute(
        """INSERT INTO circulation_event (kind, branch_id, patron_category, age_group, item_type, ndc, is_group)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (kind, branch, category, group, item["item_type"], item["ndc"], is_group))


# -- check-in ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckinResult:
    item: str
    title: str
    status: str                       # the item's status after check-in
    loan_id: int | None = None        # None: the item was not on loan (a double scan, or a transit arriving)
    overdue_days: int = 0
    transfer_to: str | None = None    # branch code the item must travel to (回送先)
    transit_received: bool = False
    hold: HoldInfo | None = None
    suspended_until: date | None = None
    alerts: tuple[str, ...] = field(default=())


def checkin(conn: DB, actor: Actor, item_barcode: str, *, branch: str | None = None,
            staff_branch: str | None = None, today: date | None = None) -> CheckinResult:
    """返却: take an item back at the counter's branch; start a transit home when it belongs elsewhere."""
    today = today or date.today()
    policy = current_policy(conn)
    barcode_rules = list(rules_for_branch(policy.barcode_rules, branch or staff_branch))
    code = _scan(item_barcode, barcode_rules, "item")
    with conn.transaction():
        counter_id, _ = counter_branch(conn, branch, staff_branch, policy)
        item = conn.execute(_ITEM_SQL + " FOR UPDATE OF i", (code,)).fetchone()
        if item is None:
            raise _unknown_item(conn, code, barcode_rules)
        if item["status"] == "withdrawn":
            raise refusal("item_withdrawn", "この資料は除籍済みです。", "This item has been withdrawn.", field="item")
        loan = conn.execute(
            """SELECT l.id, l.patron_id, l.due_date, p.category, p.birth_date, c.is_group
               FROM loan l JOIN patron p ON p.id = l.patron_id JOIN patron_category c ON c.code = p.category
               WHERE l.item_id = %s AND l.returned_at IS NULL FOR UPDATE OF l""", (item["id"],)).fetchone()
        alerts: list[str] = []
        overdue_days = 0
        suspended_until = None
        transit_received = False
        if loan is not None:
            conn.execute("UPDATE loan SET returned_at = now(), return_branch_id = %s WHERE id = %s",
                         (counter_id, loan["id"]))
            overdue_days = max(0, (today - loan["due_date"]).days)
            _event(conn, "checkin", counter_id, loan["category"], age_group(loan["birth_date"], today), item,
                   loan["is_group"])
            if overdue_days:
                alerts.append("overdue")
                suspended_until = _suspend_for_overdue(conn, actor, loan["patron_id"], overdue_days, today)
        else:
            transit = conn.execute(
                """SELECT x.id, x.from_branch_id, x.to_branch_id, b.code AS destination
                   FROM item_transit x JOIN branch b ON b.id = x.to_branch_id
                   WHERE x.item_id = %s AND x.received_at IS NULL FOR UPDATE OF x""", (item["id"],)).fetchone()
            if transit is not None and transit["from_branch_id"] == counter_id != transit["to_branch_id"]:
                # Scanned again where it was sent from: still to go, nothing changes.
                return CheckinResult(code, item["title"], item["status"], transfer_to=transit["destination"],
                                     alerts=("not_on_loan", "transfer"))
            if transit is not None and transit["to_branch_id"] == counter_id:
                conn.execute("UPDATE item_transit SET received_at = now() WHERE id = %s", (transit["id"],))
                transit_received = True
            elif transit is None and item["status"] in ("available", "on_hold_shelf") and (
                    item["branch_id"] == counter_id or item["status"] == "on_hold_shelf"):
                if item["status"] == "available":
                    # A copy pulled from the shelf for a waiting hold (the pull list): trap it.
                    pulled = hooks.trap(conn, item, counter_id)
                    if pulled is not None:
                        after = conn.execute("SELECT status FROM item WHERE id = %s", (item["id"],)).fetchone()
                        conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (item["record_id"],))
                        return CheckinResult(code, item["title"], after["status"] if after else item["status"],
                                             hold=pulled, alerts=("hold",))
                alerts.append("not_on_loan")
                return CheckinResult(code, item["title"], item["status"], alerts=tuple(alerts))
            elif transit is not None:
                # Arrived somewhere else than expected: re-route from here.
                conn.execute("UPDATE item_transit SET received_at = now() WHERE id = %s", (transit["id"],))
        hold = hooks.trap(conn, item, counter_id)
        transfer_to = None
        if hold is not None:
            after = conn.execute("SELECT status FROM item WHERE id = %s", (item["id"],)).fetchone()
            status = after["status"] if after else item["status"]
        elif item["branch_id"] != counter_id:
            status = "in_transit"
            transfer_to = item["home_branch"]
            conn.execute("""INSERT INTO item_transit (item_id, from_branch_id, to_branch_id, reason)
                            VALUES (%s, %s, %s, 'return')""", (item["id"], counter_id, item["branch_id"]))
            conn.execute("UPDATE item SET status = 'in_transit', current_branch_id = %s, updated_at = now() "
                         "WHERE id = %s", (counter_id, item["id"]))
            alerts.append("transfer")
        else:
            status = item["status"]
            if status in ("missing", "lost"):
                alerts.append("found")  # 不明・紛失資料が見つかった
            if status in ("on_loan", "in_transit", "available", "missing", "lost"):
                status = "available"
            conn.execute("UPDATE item SET status = %s, current_branch_id = %s, updated_at = now() WHERE id = %s",
                         (status, counter_id, item["id"]))
        if status != item["status"]:
            conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (item["record_id"],))
        if hold is not None:
            alerts.append("hold")
        return CheckinResult(code, item["title"], status, loan["id"] if loan else None, overdue_days, transfer_to,
                             transit_received, hold, suspended_until, tuple(alerts))


def suspension_days_per_overdue_day(conn: DB) -> int:
    """Library setting `circulation.suspension_days_per_overdue_day`: 0 (the default) means no automatic
    suspension; 1 suspends lending for as many days as the return was late (延滞日数分の貸出停止)."""
    row = conn.execute("SELECT value FROM library_setting WHERE key = 'circulation.suspension_days_per_overdue_day'"
                       ).fetchone()
    return int(row["value"]) if row else 0


def _suspend_for_overdue(conn: DB, actor: Actor, patron_id: int, overdue_days: int, today: date) -> date | None:
    factor = suspension_days_per_overdue_day(conn)
    if factor <= 0:
        return None
    until = today + timedelta(days=overdue_days * factor)
    conn.execute("""INSERT INTO patron_block (patron_id, kind, reason, starts_on, ends_on, created_by)
                    VALUES (%s, 'suspension', %s, %s, %s, %s)""",
                 (patron_id, f"延滞 {overdue_days} 日", today, until, actor.name))
    return until


# -- renewal -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenewResult:
    loan_id: int
    item: str
    title: str
    due_date: date
    renewals: int


def renew(conn: DB, actor: Actor, item_barcode: str, *, branch: str | None = None,
          staff_branch: str | None = None, today: date | None = None,
          patron_id: int | None = None) -> RenewResult:
    """延長: extend a loan. `patron_id`, when given, must be the borrower (My Library renews only its own)."""
    today = today or date.today()
    policy = current_policy(conn)
    barcode_rules = list(rules_for_branch(policy.barcode_rules, branch or staff_branch))
    code = _scan(item_barcode, barcode_rules, "item")
    with conn.transaction():
        counter_id, counter_code = counter_branch(conn, branch, staff_branch, policy)
        item = conn.execute(_ITEM_SQL + " FOR UPDATE OF i", (code,)).fetchone()
        if item is None:
            raise _unknown_item(conn, code, barcode_rules)
        loan = conn.execute(
            """SELECT l.id, l.patron_id, l.due_date, l.renewals, p.category, p.birth_date, p.expires_on, c.is_group
               FROM loan l JOIN patron p ON p.id = l.patron_id JOIN patron_category c ON c.code = p.category
               WHERE l.item_id = %s AND l.returned_at IS NULL FOR UPDATE OF l""", (item["id"],)).fetchone()
        if loan is None or (patron_id is not None and loan["patron_id"] != patron_id):
            raise refusal("item_not_on_loan", f"資料「{code}」は貸出中ではありません。",
                          f"Item {code!r} is not on loan.", field="item")
        blocking = [p for p in patron_refusals(standing(conn, loan["patron_id"], today), today)
                    if p.code != "patron_has_overdue"]
        if blocking:
            raise refusal("renewal_refused", f"延長できません: {blocking[0].message_ja}",
                          f"Cannot renew: {blocking[0].message_en}", field="item")
        rule = loan_rules.resolve_rule(policy.rules, loan["category"], item["item_type"], counter_code)
        problem = loan_rules.renewal_refusal(rule, loan["renewals"], hooks.holds_waiting(conn, item["record_id"],
                                                                                          item["id"]),
                                             overdue=loan["due_date"] < today)
        if problem is not None:
            raise problem
        due = loan_rules.renewal_due_date(rule, today, loan["due_date"], policy.calendar(conn, counter_id, today))
        conn.execute("UPDATE loan SET due_date = %s, renewals = renewals + 1, last_renewed_at = now() WHERE id = %s",
                     (due, loan["id"]))
        _event(conn, "renew", counter_id, loan["category"], age_group(loan["birth_date"], today), item,
               loan["is_group"])
        return RenewResult(int(loan["id"]), code, item["title"], due, int(loan["renewals"]) + 1)
