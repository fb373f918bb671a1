"""貸出規則: every combination of a 3 × 3 × 3 matrix resolved against a brute-force oracle, due dates on closed
days, fixed due dates, renewals, limits at n-1 / n / n+1, and the admin screen's checks."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import date, timedelta

import pytest

from api.calendar.days import BranchCalendar, YearPattern, calendar_from_plan, plan_year
from api.circulation.rules import (
    LimitReached,
    LoanRule,
    NoRule,
    RenewalRefused,
    check_limits,
    due_date,
    limit_rule,
    renewal_due_date,
    renewal_refusal,
    resolve_rule,
    rule_problems,
    specificity,
    validate_rules,
)
from api.errors import ShokaError

CATEGORIES = ["general", "child", "group"]
ITEM_TYPES = ["book", "av", "magazine"]
BRANCHES = ["main", "east", "west"]

# Koha's order, written out by hand: branch, then category, then item type; "*" is any.
PRIORITY = [("b", "c", "t"), ("b", "c", "*"), ("b", "*", "t"), ("b", "*", "*"),
            ("*", "c", "t"), ("*", "c", "*"), ("*", "*", "t"), ("*", "*", "*")]


def d(text: str) -> date:
    return date.fromisoformat(text)


def matrix_rules(with_fallback: bool = True) -> list[LoanRule]:
    """Rules at every specificity level, each for only some keys (seeded choice, at least one per level), so
    that many lookups fall through several levels. loan_days is unique per rule and identifies it."""
    rules: list[LoanRule] = []
    chooser = random.Random(7)
    for level in PRIORITY:
        if level == ("*", "*", "*"):
            if with_fallback:
                rules.append(LoanRule(None, None, None, loan_days=len(rules) + 1, id=len(rules) + 1))
            continue
        keys = list(itertools.product(*[values if mark != "*" else [None] for values, mark in
                                        zip((BRANCHES, CATEGORIES, ITEM_TYPES), level, strict=True)]))
        share = {3: 0.2, 2: 0.35, 1: 0.5}[sum(mark != "*" for mark in level)]
        chosen = [key for key in keys if chooser.random() < share] or keys[:1]
        for branch, category, item_type in chosen:
            rules.append(LoanRule(category, item_type, branch, loan_days=len(rules) + 1, id=len(rules) + 1))
    return rules


def oracle(rules: list[LoanRule], category: str, item_type: str | None, branch: str,
           levels: list[tuple[str, str, str]] = PRIORITY) -> LoanRule | None:
    for level in levels:
        want = (branch if level[0] == "b" else None, category if level[1] == "c" else None,
                item_type if level[2] == "t" else None)
        for rule in rules:
            if (rule.branch, rule.patron_category, rule.item_type) == want:
                return rule
    return None


def test_the_matrix_has_rules_at_every_level() -> None:
    rules = matrix_rules()
    assert {specificity(r) for r in rules} == set(itertools.product((0, 1), repeat=3))
    assert len(rules) > 20


def test_every_combination_against_the_oracle() -> None:
    rules = matrix_rules()
    levels_used = set()
    for category, item_type, branch in itertools.product(CATEGORIES, ITEM_TYPES, BRANCHES):
        expected = oracle(rules, category, item_type, branch)
        assert expected is not None
        assert resolve_rule(rules, category, item_type, branch) == expected, (category, item_type, branch)
        levels_used.add(specificity(expected))
        expected_limit = oracle(rules, category, None, branch, [x for x in PRIORITY if x[2] == "*"])
        assert limit_rule(rules, category, branch) == expected_limit, (category, branch)
    assert len(levels_used) >= 6  # the matrix really exercises the fall-through


def test_order_of_the_rules_does_not_matter() -> None:
    rules = matrix_rules()
    expected = {key: resolve_rule(rules, *key) for key in itertools.product(CATEGORIES, ITEM_TYPES, BRANCHES)}
    generator = random.Random(4)
    for _ in range(20):
        shuffled = rules[:]
        generator.shuffle(shuffled)
        assert {key: resolve_rule(shuffled, *key) for key in expected} == expected


def test_without_a_fallback_some_lookups_have_no_rule() -> None:
    rules = matrix_rules(with_fallback=False)
    missing = 0
    for category, item_type, branch in itertools.product(CATEGORIES, ITEM_TYPES, BRANCHES):
        expected = oracle(rules, category, item_type, branch)
        assert expected is not None  # the seeded matrix covers every loan below the fallback
        assert resolve_rule(rules, category, item_type, branch) == expected
    for category, branch in itertools.product(CATEGORIES, BRANCHES):
        expected = oracle(rules, category, None, branch, [x for x in PRIORITY if x[2] == "*"])
        if expected is not None:
            assert limit_rule(rules, category, branch) == expected
            continue
        missing += 1
        with pytest.raises(NoRule) as caught:
            limit_rule(rules, category, branch)
        error = caught.value
        assert (error.code, error.status) == ("no_loan_rule", 409)
        for name in (category, branch):
            assert name in error.message_ja and name in error.message_en
    assert missing > 0
    with pytest.raises(NoRule) as caught:
        resolve_rule([LoanRule("child", None, None)], "general", "av", "main")
    for name in ("general", "av", "main"):
        assert name in caught.value.message_ja and name in caught.value.message_en


def test_branch_weighs_most_then_category_then_item_type() -> None:
    branch_only = LoanRule(None, None, "east", loan_days=1)
    category_and_type = LoanRule("child", "av", None, loan_days=2)
    branch_and_category = LoanRule("child", None, "east", loan_days=3)
    branch_and_type = LoanRule(None, "av", "east", loan_days=4)
    fallback = LoanRule(None, None, None, loan_days=5)
    assert resolve_rule([fallback, category_and_type, branch_only], "child", "av", "east") == branch_only
    assert resolve_rule([fallback, branch_and_type, branch_and_category], "child", "av", "east") == branch_and_category
    assert resolve_rule([fallback, branch_and_type, branch_only], "child", "av", "east") == branch_and_type
    assert resolve_rule([fallback, category_and_type, branch_only], "child", "av", "main") == category_and_type
    assert resolve_rule([fallback, category_and_type], "general", "av", "main") == fallback
    assert specificity(branch_only) > specificity(category_and_type)
    assert specificity(LoanRule("child", "av", "east")) == (1, 1, 1)
    assert specificity(fallback) == (0, 0, 0)
    # equal keys (an error validate_rules reports): the first one given wins
    first, second = LoanRule("child", None, None, loan_days=7), LoanRule("child", None, None, loan_days=8)
    assert resolve_rule([fallback, first, second], "child", "book", "main") is first


# --- due dates ----------------------------------------------------------------------------------------------------

def library_2026() -> BranchCalendar:
    pattern = YearPattern(weekly_closed=frozenset({0}))
    return calendar_from_plan(pattern, [p for y in (2025, 2026, 2027) for p in plan_year(y, pattern)])


def test_due_date_moves_to_the_next_open_day() -> None:
    calendar = library_2026()
    rule = LoanRule(None, None, None, loan_days=14)
    assert due_date(rule, d("2026-04-14"), calendar) == d("2026-04-28")  # a Tuesday, open
    assert due_date(rule, d("2026-04-13"), calendar) == d("2026-04-28")  # the 27th is a Monday
    assert due_date(rule, d("2026-04-15"), calendar) == d("2026-04-30")  # the 29th is 昭和の日
    assert due_date(rule, d("2026-04-21"), calendar) == d("2026-05-08")  # Golden Week: 5/5, 5/6, 5/7 closed
    assert due_date(rule, d("2026-12-15"), calendar) == d("2027-01-05")  # 年末年始, then Monday 1/4
    assert due_date(rule, d("2026-09-10"), calendar) == d("2026-09-25")  # 9/24 振替休館
    assert due_date(rule, d("2026-09-07"), calendar) == d("2026-09-21")  # 敬老の日 opens


def test_due_date_every_day_of_2026() -> None:
    calendar = library_2026()
    open_days = calendar.open_days(d("2026-01-01"), d("2027-03-31"))
    for loan_days in (1, 7, 14, 21):
        rule = LoanRule(None, None, None, loan_days=loan_days)
        for offset in range(365):
            today = d("2026-01-01") + timedelta(days=offset)
            target = today + timedelta(days=loan_days)
            expected = min(x for x in open_days if x >= target)
            assert due_date(rule, today, calendar) == expected, (today, loan_days)


def test_fixed_due_date() -> None:
    calendar = library_2026()
    term_end = LoanRule("group", None, None, loan_days=30, fixed_due_date=d("2026-07-17"))  # a Friday
    assert due_date(term_end, d("2026-04-10"), calendar) == d("2026-07-17")  # longer than 30 days
    assert due_date(term_end, d("2026-07-10"), calendar) == d("2026-07-17")  # shorter than 30 days
    assert due_date(term_end, d("2026-07-17"), calendar) == d("2026-07-17")  # today is not "passed"
    assert due_date(term_end, d("2026-07-18"), calendar) == d("2026-08-18")  # passed: today + 30 is a Monday
    on_closed = replace(term_end, fixed_due_date=d("2026-07-20"))  # a Monday holiday: opens (振替)
    assert due_date(on_closed, d("2026-07-01"), calendar) == d("2026-07-20")
    on_closed = replace(term_end, fixed_due_date=d("2026-03-23"))  # an ordinary Monday: closed
    assert due_date(on_closed, d("2026-03-01"), calendar) == d("2026-03-24")
    assert due_date(on_closed, d("2026-03-23"), calendar) == d("2026-03-24")
    on_new_year = replace(term_end, fixed_due_date=d("2026-12-30"))
    assert due_date(on_new_year, d("2026-12-01"), calendar) == d("2027-01-05")


def test_renewal_never_shortens_a_loan() -> None:
    calendar = library_2026()
    rule = LoanRule(None, None, None, loan_days=21, renewal_days=14)
    # renewed on the day of the loan: 14 days would be shorter than the 21 already given
    assert renewal_due_date(rule, d("2026-04-14"), d("2026-05-08"), calendar) == d("2026-05-08")
    # renewed near the end: today + 14, moved off Monday 5/25
    assert renewal_due_date(rule, d("2026-05-11"), d("2026-05-12"), calendar) == d("2026-05-26")
    # renewed on the due date itself into 年末年始
    assert renewal_due_date(rule, d("2026-12-15"), d("2026-12-15"), calendar) == d("2027-01-05")
    # every day of 2026, due dates from today to today + 30
    open_days = calendar.open_days(d("2026-01-01"), d("2027-03-31"))
    for offset in range(365):
        today = d("2026-01-01") + timedelta(days=offset)
        moved = min(x for x in open_days if x >= today + timedelta(days=14))
        for ahead in range(0, 31, 3):
            current_due = today + timedelta(days=ahead)
            result = renewal_due_date(rule, today, current_due, calendar)
            assert result >= current_due
            assert result == (current_due if current_due > moved else moved), (today, current_due)


# --- limits -------------------------------------------------------------------------------------------------------

LIMIT_RULES = [
    LoanRule(None, None, None, max_loans=10),
    LoanRule("child", None, None, max_loans=5),
    LoanRule("child", None, "east", max_loans=3),
    LoanRule(None, "av", None, max_loans=99, max_loans_of_type=3),  # max_loans here is not the overall limit
    LoanRule("child", "av", None, max_loans_of_type=1),
    LoanRule("general", "magazine", "west", max_loans_of_type=0),
    LoanRule("group", None, None, max_loans_of_type=2),  # without an item type: ignored (validate_rules says so)
]


@pytest.mark.parametrize(("category", "branch", "limit"), [
    ("general", "main", 10), ("child", "main", 5), ("child", "east", 3), ("group", "east", 10)])
def test_overall_limit_at_n_minus_1_n_n_plus_1(category: str, branch: str, limit: int) -> None:
    check_limits(LIMIT_RULES, category, "book", branch, loans_total=limit - 2, loans_of_type=0)
    check_limits(LIMIT_RULES, category, "book", branch, loans_total=limit - 1, loans_of_type=limit - 1)
    for current in (limit, limit + 1):
        with pytest.raises(LimitReached) as caught:
            check_limits(LIMIT_RULES, category, "book", branch, loans_total=current, loans_of_type=0)
        error = caught.value
        assert (error.code, error.status, error.limit, error.maximum, error.current) == (
            "limit_reached", 409, "overall", limit, current)
        assert f"{limit} 冊" in error.message_ja and f"{current} of {limit}" in error.message_en


@pytest.mark.parametrize(("category", "item_type", "branch", "limit"), [
    ("general", "av", "main", 3), ("child", "av", "west", 1), ("general", "magazine", "west", 0)])
def test_limit_of_type_at_n_minus_1_n_n_plus_1(category: str, item_type: str, branch: str, limit: int) -> None:
    if limit > 0:
        check_limits(LIMIT_RULES, category, item_type, branch, loans_total=limit - 1, loans_of_type=limit - 1)
    for current in (limit, limit + 1):
        with pytest.raises(LimitReached) as caught:
            check_limits(LIMIT_RULES, category, item_type, branch, loans_total=current, loans_of_type=current)
        error = caught.value
        assert (error.code, error.limit, error.maximum, error.current, error.item_type) == (
            "limit_reached", "of_type", limit, current, item_type)
        assert item_type in error.message_ja and item_type in error.message_en


def test_limits_that_do_not_apply() -> None:
    # other item types are not counted against the av limit
    check_limits(LIMIT_RULES, "general", "book", "main", loans_total=9, loans_of_type=9)
    # the magazine limit of 0 is for west only
    check_limits(LIMIT_RULES, "general", "magazine", "main", loans_total=0, loans_of_type=0)
    # max_loans_of_type on a rule without an item type is ignored
    check_limits(LIMIT_RULES, "group", "book", "main", loans_total=5, loans_of_type=5)
    # the overall limit is checked first
    with pytest.raises(LimitReached) as caught:
        check_limits(LIMIT_RULES, "child", "av", "east", loans_total=3, loans_of_type=1)
    assert caught.value.limit == "overall"
    with pytest.raises(NoRule):
        check_limits(LIMIT_RULES[1:], "general", "book", "main", loans_total=0, loans_of_type=0)


# --- renewals -----------------------------------------------------------------------------------------------------

def test_renewals_left_at_n_minus_1_n_n_plus_1() -> None:
    rule = LoanRule(None, None, None, renewals=2)
    assert renewal_refusal(rule, 0, 0, False) is None
    assert renewal_refusal(rule, 1, 0, False) is None
    for done in (2, 3):
        refusal = renewal_refusal(rule, done, 0, False)
        assert isinstance(refusal, RenewalRefused)
        assert (refusal.code, refusal.status, refusal.reason) == ("renewal_refused", 409, "no_renewals_left")
        assert f"{done} of 2 used" in refusal.message_en and "2 回中" in refusal.message_ja
    no_renewal = renewal_refusal(LoanRule(None, None, None, renewals=0), 0, 0, False)
    assert isinstance(no_renewal, RenewalRefused) and no_renewal.reason == "no_renewals_left"


def test_renewal_refused_for_holds_overdue_and_unloanable() -> None:
    rule = LoanRule(None, None, None, renewals=1)
    holds = renewal_refusal(rule, 0, 2, False)
    assert isinstance(holds, RenewalRefused) and holds.reason == "holds_waiting"
    assert "2" in holds.message_ja and "2 hold" in holds.message_en
    # holds are named before the count, so the patron hears the reason that will not go away
    both = renewal_refusal(rule, 1, 1, False)
    assert isinstance(both, RenewalRefused) and both.reason == "holds_waiting"
    assert renewal_refusal(rule, 0, 0, True) is None  # overdue renewals allowed by default
    overdue = renewal_refusal(rule, 0, 0, True, allow_overdue=False)
    assert isinstance(overdue, RenewalRefused) and overdue.reason == "overdue"
    assert renewal_refusal(rule, 0, 0, False, allow_overdue=False) is None
    closed = renewal_refusal(replace(rule, loanable=False), 0, 0, False)
    assert isinstance(closed, RenewalRefused) and closed.reason == "not_loanable"
    assert isinstance(closed, ShokaError)


# --- the admin screen's checks ------------------------------------------------------------------------------------

def test_a_sound_matrix_has_no_problems() -> None:
    assert validate_rules(matrix_rules()) == []
    assert validate_rules([LoanRule(None, None, None), LoanRule("child", "av", "east", max_loans_of_type=0,
                                                                 max_loans=0, renewals=0, max_holds=0)]) == []


def test_problems_are_found() -> None:
    fallback = LoanRule(None, None, None)
    cases: list[tuple[list[LoanRule], list[str]]] = [
        ([], ["no_fallback"]),
        ([LoanRule("child", None, None)], ["no_fallback"]),
        ([fallback, LoanRule("child", "av", None), LoanRule("child", "av", None)], ["duplicate_rule"]),
        ([fallback, fallback], ["duplicate_rule"]),
        ([fallback, LoanRule("child", None, None, loan_days=0)], ["loan_days"]),
        ([replace(fallback, loan_days=-3)], ["loan_days"]),
        ([replace(fallback, renewal_days=0)], ["renewal_days"]),
        ([replace(fallback, max_loans=-1, renewals=-1, max_holds=-1)], ["max_loans", "renewals", "max_holds"]),
        ([fallback, LoanRule(None, "av", None, max_loans_of_type=-1)], ["max_loans_of_type"]),
        ([fallback, LoanRule("child", None, None, max_loans_of_type=2)], ["max_loans_of_type_without_item_type"]),
        ([fallback, LoanRule("", None, None)], ["empty_key"]),
        ([LoanRule("child", None, None, loan_days=0), LoanRule("child", None, None)],
         ["loan_days", "duplicate_rule", "no_fallback"]),
    ]
    for rules, codes in cases:
        assert [p.code for p in rule_problems(rules)] == codes, rules
        assert validate_rules(rules) == [p.message_ja for p in rule_problems(rules)]


def test_problem_messages_name_the_rule() -> None:
    rules = [LoanRule(None, None, None), LoanRule("child", "av", "east"), LoanRule("child", "av", "east",
                                                                                   loan_days=0)]
    problems = rule_problems(rules)
    assert [(p.code, p.index) for p in problems] == [("duplicate_rule", 2), ("loan_days", 2)]
    assert problems[0].message_ja.startswith("規則 3（利用者区分 child・資料区分 av・館 east）")
    assert "規則 2" in problems[0].message_ja and "rule 2" in problems[0].message_en
    assert "0" in problems[1].message_ja and "is 0" in problems[1].message_en


def test_a_fixed_due_date_caps_renewals() -> None:
    cal = BranchCalendar()
    term_end = date(2026, 7, 20)
    rule = LoanRule("group", None, None, renewal_days=30, fixed_due_date=term_end)
    assert renewal_due_date(rule, date(2026, 7, 1), date(2026, 7, 10), cal) == term_end
    # Once the term is over the fixed date no longer applies.
    assert renewal_due_date(rule, date(2026, 8, 1), date(2026, 8, 1), cal) == date(2026, 8, 31)
    # Never shorter than the current due date.
    assert renewal_due_date(rule, date(2026, 7, 1), date(2026, 7, 25), cal) == date(2026, 7, 25)
