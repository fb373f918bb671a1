"""貸出規則: the loan rules matrix, patron category (利用者区分) × item type (資料区分) × branch (館).

Each rule names a category, an item type and a branch, or None for "any". The branch is the lending branch,
i.e. the counter's branch. Of the rules that match a loan, the most specific wins, compared in this order
(as in Koha's circulation rules):

1. a rule for the branch beats any rule for all branches;
2. then a rule for the patron category beats one for all categories;
3. then a rule for the item type beats one for all item types.

So (branch, -, -) beats (-, category, type), and (branch, category, -) beats (branch, -, type). The
all-None rule is the fallback (既定の規則) that every library should have. Two rules with the same key are an
error the admin screen reports (validate_rules); should it happen anyway, the first one given wins.

The overall limit (貸出冊数の上限, all the patron's loans) comes from the most specific rule without an item
type (limit_rule); the per-type limit (max_loans_of_type) and everything else from resolve_rule.
All functions are pure: the service loads the rules and the calendar and passes them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from api.calendar.days import BranchCalendar
from api.errors import ShokaError


@dataclass(frozen=True)
class LoanRule:
    patron_category: str | None
    item_type: str | None
    branch: str | None
    loan_days: int = 14
    max_loans: int = 10
    max_loans_of_type: int | None = None
    renewals: int = 1
    renewal_days: int = 14
    max_holds: int = 10
    fixed_due_date: date | None = None
    loanable: bool = True
    id: int | None = None


def _any(value: str | None, ja: str, en: str) -> tuple[str, str]:
    return (ja, en) if value is None else (value, value)


def describe_key(patron_category: str | None, item_type: str | None, branch: str | None) -> tuple[str, str]:
    """The key in words, Japanese and English: 「利用者区分 general・資料区分 book・館 main」."""
    category = _any(patron_category, "すべて", "any")
    kind = _any(item_type, "すべて", "any")
    place = _any(branch, "すべて", "any")
    return (f"利用者区分 {category[0]}・資料区分 {kind[0]}・館 {place[0]}",
            f"patron category {category[1]}, item type {kind[1]}, branch {place[1]}")


class NoRule(ShokaError):
    """No loan rule matches: the library has no fallback rule. Names what was looked up."""

    def __init__(self, patron_category: str, item_type: str | None, branch: str) -> None:
        ja, en = describe_key(patron_category, item_type, branch)
        super().__init__("no_loan_rule", f"該当する貸出規則がありません（{ja}）。既定の規則を登録してください。",
                         f"No loan rule matches {en}; add a fallback rule.", status=409)
        self.patron_category = patron_category
        self.item_type = item_type
        self.branch = branch


class LimitReached(ShokaError):
    """code "limit_reached": one more loan would pass a limit. `limit` is "overall" or "of_type"."""

    def __init__(self, limit: str, maximum: int, current: int, item_type: str | None = None) -> None:
        if limit == "overall":
            ja = f"貸出冊数の上限に達しています（全体 {maximum} 冊まで、貸出中 {current} 冊）。"
            en = f"Loan limit reached: {current} of {maximum} loans overall."
        else:
            ja = f"資料区分 {item_type} の貸出冊数の上限に達しています（{maximum} 冊まで、貸出中 {current} 冊）。"
            en = f"Loan limit reached for item type {item_type}: {current} of {maximum} loans of that type."
        super().__init__("limit_reached", ja, en, status=409)
        self.limit = limit
        self.maximum = maximum
        self.current = current
        self.item_type = item_type


class RenewalRefused(ShokaError):
    """code "renewal_refused"; `reason` is "not_loanable", "holds_waiting", "no_renewals_left" or "overdue"."""

    def __init__(self, reason: str, message_ja: str, message_en: str) -> None:
        super().__init__("renewal_refused", message_ja, message_en, status=409)
        self.reason = reason


def specificity(rule: LoanRule) -> tuple[int, int, int]:
    """(branch set, category set, item type set) as 0/1: compared as a tuple, branch weighs most."""
    return (int(rule.branch is not None), int(rule.patron_category is not None), int(rule.item_type is not None))


def _matches(rule: LoanRule, patron_category: str, item_type: str | None, branch: str) -> bool:
    return ((rule.patron_category is None or rule.patron_category == patron_category)
            and (rule.item_type is None or rule.item_type == item_type)
            and (rule.branch is None or rule.branch == branch))


def _most_specific(candidates: list[LoanRule]) -> LoanRule | None:
    best: LoanRule | None = None
    for rule in candidates:  # strict > keeps the first of equally specific rules
        if best is None or specificity(rule) > specificity(best):
            best = rule
    return best


def resolve_rule(rules: Sequence[LoanRule], patron_category: str, item_type: str, branch: str) -> LoanRule:
    """The most specific rule matching a loan of `item_type` to a `patron_category` patron at `branch`."""
    best = _most_specific([r for r in rules if _matches(r, patron_category, item_type, branch)])
    if best is None:
        raise NoRule(patron_category, item_type, branch)
    return best


def limit_rule(rules: Sequence[LoanRule], patron_category: str, branch: str) -> LoanRule:
    """The rule for the overall limit: the most specific matching rule without an item type."""
    best = _most_specific([r for r in rules if r.item_type is None and _matches(r, patron_category, None, branch)])
    if best is None:
        raise NoRule(patron_category, None, branch)
    return best


def due_date(rule: LoanRule, today: date, calendar: BranchCalendar) -> date:
    """返却期限: the fixed due date when set and not before today, else today + loan_days; moved to the next
    open day of the lending branch when that day is closed."""
    if rule.fixed_due_date is not None and rule.fixed_due_date >= today:
        return calendar.next_open_day(rule.fixed_due_date)
    return calendar.next_open_day(today + timedelta(days=rule.loan_days))


def renewal_due_date(rule: LoanRule, today: date, current_due: date, calendar: BranchCalendar) -> date:
    """延長後の返却期限: today + renewal_days moved to the next open day, never earlier than current_due
    (a renewal on the day of the loan must not shorten it). A fixed due date still ahead caps the renewal, as
    Koha's hard due date does: a school's loans all come back at the end of term."""
    extended = calendar.next_open_day(today + timedelta(days=rule.renewal_days))
    if rule.fixed_due_date is not None and rule.fixed_due_date >= today:
        extended = min(extended, calendar.next_open_day(rule.fixed_due_date))
    return max(current_due, extended)


def check_limits(rules: Sequence[LoanRule], patron_category: str, item_type: str, branch: str,
                 loans_total: int, loans_of_type: int) -> None:
    """Raise LimitReached ("limit_reached", 409) when one more loan would exceed the overall limit (limit_rule's
    max_loans) or the per-type limit (resolve_rule's max_loans_of_type, when that rule names an item type).
    loans_total / loans_of_type are the patron's current loans, all and of this item type."""
    overall = limit_rule(rules, patron_category, branch)
    if loans_total + 1 > overall.max_loans:
        raise LimitReached("overall", overall.max_loans, loans_total)
    rule = resolve_rule(rules, patron_category, item_type, branch)
    if rule.item_type is not None and rule.max_loans_of_type is not None and loans_of_type + 1 > rule.max_loans_of_type:
        raise LimitReached("of_type", rule.max_loans_of_type, loans_of_type, item_type)


def renewal_refusal(rule: LoanRule, renewals_done: int, holds_waiting: int, overdue: bool,
                    allow_overdue: bool = True) -> ShokaError | None:
    """Why a loan cannot be renewed (a RenewalRefused to raise), or None when it can. Checked in this order:
    the rule forbids lending, holds are waiting (予約あり), no renewals left, overdue (when not allowed)."""
    if not rule.loanable:
        return RenewalRefused("not_loanable", "この資料は貸出できない規則のため延長できません。",
                              "This item may not be lent under the loan rules, so it cannot be renewed.")
    if holds_waiting > 0:
        return RenewalRefused("holds_waiting", f"予約が {holds_waiting} 件あるため延長できません。",
                              f"Cannot renew: {holds_waiting} hold(s) waiting.")
    if renewals_done >= rule.renewals:
        return RenewalRefused("no_renewals_left",
                              f"延長回数の上限に達しています（{rule.renewals} 回中 {renewals_done} 回延長済み）。",
                              f"No renewals left ({renewals_done} of {rule.renewals} used).")
    if overdue and not allow_overdue:
        return RenewalRefused("overdue", "返却期限を過ぎているため延長できません。",
                              "Cannot renew: the loan is overdue.")
    return None


@dataclass(frozen=True)
class RuleProblem:
    """One problem with the rules, for the admin screen: `index` is the rule's position (None: the whole set)."""

    code: str
    message_ja: str
    message_en: str
    index: int | None = None


def rule_problems(rules: Sequence[LoanRule]) -> list[RuleProblem]:
    """Every problem with a set of rules, in rule order, then the set-wide ones."""
    problems: list[RuleProblem] = []
    seen: dict[tuple[str | None, str | None, str | None], int] = {}
    for index, rule in enumerate(rules):
        key = (rule.patron_category, rule.item_type, rule.branch)
        found: list[tuple[str, str, str]] = []  # (code, ja, en) for this rule
        if key in seen:
            first = seen[key] + 1
            found.append(("duplicate_rule", f"規則 {first} と同じ条件です。", f"same key as rule {first}"))
        else:
            seen[key] = index
        if "" in key:
            found.append(("empty_key", "空の条件があります（「すべて」は空欄ではなく未指定にします）。",
                          "an empty key value: leave it unset for 'any'"))
        if rule.loan_days <= 0:
            found.append(("loan_days", f"貸出期間は 1 日以上にしてください（{rule.loan_days} 日）。",
                          f"loan_days must be at least 1 (is {rule.loan_days})"))
        if rule.renewal_days <= 0:
            found.append(("renewal_days", f"延長期間は 1 日以上にしてください（{rule.renewal_days} 日）。",
                          f"renewal_days must be at least 1 (is {rule.renewal_days})"))
        counts = (("max_loans", rule.max_loans, "貸出冊数"), ("renewals", rule.renewals, "延長回数"),
                  ("max_holds", rule.max_holds, "予約件数"),
                  ("max_loans_of_type", rule.max_loans_of_type, "資料区分ごとの貸出冊数"))
        for name, value, what in counts:
            if value is not None and value < 0:
                found.append((name, f"{what}は 0 以上にしてください（{value}）。",
                              f"{name} must be 0 or more (is {value})"))
        if rule.max_loans_of_type is not None and rule.item_type is None:
            found.append(("max_loans_of_type_without_item_type",
                          "資料区分ごとの上限は資料区分を指定した規則にだけ設定できます。",
                          "max_loans_of_type needs an item type"))
        ja, en = describe_key(*key)
        problems.extend(RuleProblem(code, f"規則 {index + 1}（{ja}）: {message_ja}",
                                    f"rule {index + 1} ({en}): {message_en}", index)
                        for code, message_ja, message_en in found)
    if (None, None, None) not in seen:
        problems.append(RuleProblem("no_fallback",
                                    "既定の規則（利用者区分・資料区分・館がすべて未指定）がありません。",
                                    "No fallback rule (any category, any item type, any branch)."))
    return problems


def validate_rules(rules: Sequence[LoanRule]) -> list[str]:
    """The problems an admin screen should show, in Japanese (rule_problems has codes and English too)."""
    return [problem.message_ja for problem in rule_problems(rules)]
