"""開館日カレンダー: every day of 2024–2027 against a brute-force oracle, and the yearly bulk entry (plan_year)
against the published 2026 holidays and hand-worked closures."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, timedelta

import pytest

from api.calendar.days import (
    BranchCalendar,
    CalendarError,
    PlannedDay,
    YearPattern,
    calendar_from_plan,
    national_holidays,
    nth_weekday_matches,
    plan_year,
)
from api.errors import ShokaError

ONE = timedelta(days=1)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def d(text: str) -> date:
    return date.fromisoformat(text)


# --- the oracle: months enumerated day by day, no week arithmetic ----------------------------------------------

def oracle_monthly_closed(monthly: set[tuple[int, int]], start: date, end: date) -> set[date]:
    """Each (nth, weekday) found by listing the month's days with that weekday and indexing the list."""
    closed: set[date] = set()
    month = date(start.year, start.month, 1)
    while month <= end:
        in_month = [x for x in days(month, month + timedelta(days=31)) if x.month == month.month]
        for nth, weekday in monthly:
            matching = [x for x in in_month if x.weekday() == weekday]
            index = nth - 1 if nth > 0 else len(matching) + nth
            if 0 <= index < len(matching):
                closed.add(matching[index])
        month = in_month[-1] + ONE
    return closed


class Oracle:
    def __init__(self, weekly: set[int], monthly: set[tuple[int, int]], closed: set[date], opened: set[date],
                 start: date = date(2023, 1, 1), end: date = date(2029, 12, 31)) -> None:
        monthly_days = oracle_monthly_closed(monthly, start, end)
        self.open = {x: (x not in closed) and (x in opened or (x.weekday() not in weekly and x not in monthly_days))
                     for x in days(start, end)}
        self.open_list = sorted(x for x, is_open in self.open.items() if is_open)

    def next_open(self, day: date) -> date:
        return self.open_list[bisect_left(self.open_list, day)]

    def nth_after(self, day: date, n: int) -> date:
        if n == 0:
            return self.next_open(day)
        return self.open_list[bisect_right(self.open_list, day) + n - 1]


CALENDARS = {
    "mondays": ({0}, set(), set(), set()),
    "mondays_last_thursday": ({0}, {(-1, 3)}, set(), set()),
    "tuesdays_3rd_wednesday_holidays": (
        {1}, {(3, 2)}, {d("2024-01-01"), d("2025-05-05"), d("2026-01-12"), d("2027-12-31")},
        {d("2024-03-19"), d("2026-01-13")}),
    "mon_sun_5th_friday_2nd_last_saturday": ({0, 6}, {(5, 4), (-2, 5)}, set(), set()),
    # a closed date and an open date on the same day: the closure wins
    "conflicting_exceptions": ({2}, {(1, 0)}, {d("2025-06-04"), d("2026-02-02")}, {d("2025-06-04"), d("2026-02-02"),
                                                                                   d("2026-03-02")}),
    # 特別整理期間: two closed weeks
    "stocktaking": ({0}, set(), set(days(d("2025-02-03"), d("2025-02-16"))), set()),
    # a bookmobile stop (移動図書館): closed by the weekly rule every day, open on dated visits only
    "bookmobile": ({0, 1, 2, 3, 4, 5, 6}, set(), set(), {d("2023-01-05") + timedelta(days=14 * i) for i in range(190)}),
}


@pytest.mark.parametrize("name", sorted(CALENDARS))
def test_every_day_2024_2027_against_the_oracle(name: str) -> None:
    weekly, monthly, closed, opened = CALENDARS[name]
    calendar = BranchCalendar(frozenset(weekly), frozenset(monthly), frozenset(closed), frozenset(opened))
    oracle = Oracle(weekly, monthly, closed, opened)
    for day in days(d("2024-01-01"), d("2027-12-31")):
        assert calendar.is_open(day) == oracle.open[day], day
        assert calendar.next_open_day(day) == oracle.next_open(day), day
        for n in (0, 1, 2, 7, 10):
            assert calendar.add_open_days(day, n) == oracle.nth_after(day, n), (day, n)
    assert calendar.open_days(d("2024-01-01"), d("2027-12-31")) == [
        x for x in oracle.open_list if d("2024-01-01") <= x <= d("2027-12-31")]


def test_the_oracle_finds_the_known_2026_days() -> None:
    # hand-counted from 2026-01-01, a Thursday
    last_thursdays = ["01-29", "02-26", "03-26", "04-30", "05-28", "06-25", "07-30", "08-27", "09-24", "10-29",
                      "11-26", "12-31"]
    third_wednesdays = ["01-21", "02-18", "03-18", "04-15", "05-20", "06-17", "07-15", "08-19", "09-16", "10-21",
                        "11-18", "12-16"]
    year = (d("2026-01-01"), d("2026-12-31"))
    assert oracle_monthly_closed({(-1, 3)}, *year) == {d("2026-" + x) for x in last_thursdays}
    assert oracle_monthly_closed({(3, 2)}, *year) == {d("2026-" + x) for x in third_wednesdays}
    for x in days(*year):
        assert nth_weekday_matches(x, -1, 3) == (x.strftime("%m-%d") in last_thursdays)
        assert nth_weekday_matches(x, 3, 2) == (x.strftime("%m-%d") in third_wednesdays)
    # a month with five Fridays (2026-01: 2, 9, 16, 23, 30) and one with four (2026-02)
    assert nth_weekday_matches(d("2026-01-30"), 5, 4) and nth_weekday_matches(d("2026-01-30"), -1, 4)
    assert not any(nth_weekday_matches(x, 5, 4) for x in days(d("2026-02-01"), d("2026-02-28")))


def test_closed_date_beats_open_date() -> None:
    day = d("2026-05-04")  # a Monday
    calendar = BranchCalendar(weekly_closed=frozenset({0}), closed_dates=frozenset({day}), open_dates=frozenset({day}))
    assert not calendar.is_open(day)
    assert BranchCalendar(weekly_closed=frozenset({0}), open_dates=frozenset({day})).is_open(day)
    # an open date overrides the monthly rule too
    assert not BranchCalendar(monthly_closed=frozenset({(-1, 3)})).is_open(d("2026-01-29"))
    assert BranchCalendar(monthly_closed=frozenset({(-1, 3)}), open_dates=frozenset({d("2026-01-29")})).is_open(
        d("2026-01-29"))


def test_next_open_day_looks_366_days_ahead_and_no_further() -> None:
    start = d("2026-04-01")
    within = BranchCalendar(closed_dates=frozenset(days(start, start + timedelta(days=365))))
    assert within.next_open_day(start) == start + timedelta(days=366)
    beyond = BranchCalendar(closed_dates=frozenset(days(start, start + timedelta(days=366))))
    with pytest.raises(CalendarError) as caught:
        beyond.next_open_day(start)
    assert caught.value.code == "no_open_day" and caught.value.status == 409
    assert "2026-04-01" in caught.value.message_ja and "2026-04-01" in caught.value.message_en
    assert isinstance(caught.value, ShokaError)
    never = BranchCalendar(weekly_closed=frozenset(range(7)))
    with pytest.raises(CalendarError):
        never.next_open_day(start)
    with pytest.raises(CalendarError):
        never.add_open_days(start, 3)
    with pytest.raises(CalendarError):  # the end of the calendar is not an OverflowError
        BranchCalendar(closed_dates=frozenset({date.max})).next_open_day(date.max)
    with pytest.raises(CalendarError):
        BranchCalendar().add_open_days(date.max, 1)


def test_add_open_days_counts_after_the_day() -> None:
    calendar = BranchCalendar(weekly_closed=frozenset({0}), closed_dates=frozenset({d("2026-05-05")}))
    saturday = d("2026-05-02")
    assert calendar.add_open_days(saturday, 0) == saturday
    assert calendar.add_open_days(saturday, 1) == d("2026-05-03")
    assert calendar.add_open_days(saturday, 2) == d("2026-05-06")  # skips Monday 4th and the closed 5th
    assert calendar.add_open_days(saturday, 6) == d("2026-05-10")
    assert calendar.add_open_days(saturday, 7) == d("2026-05-12")  # Monday 11th closed
    assert calendar.add_open_days(d("2026-05-04"), 0) == d("2026-05-06")
    with pytest.raises(ShokaError) as caught:
        calendar.add_open_days(saturday, -1)
    assert caught.value.code == "validation_error" and caught.value.field == "n"


def test_open_days_includes_both_ends() -> None:
    calendar = BranchCalendar(weekly_closed=frozenset({0}))
    assert calendar.open_days(d("2026-05-02"), d("2026-05-05")) == [d("2026-05-02"), d("2026-05-03"),
                                                                    d("2026-05-05")]
    assert calendar.open_days(d("2026-05-02"), d("2026-05-02")) == [d("2026-05-02")]
    assert calendar.open_days(d("2026-05-04"), d("2026-05-04")) == []
    assert calendar.open_days(d("2026-05-05"), d("2026-05-02")) == []
    assert BranchCalendar().open_days(date.max - ONE, date.max) == [date.max - ONE, date.max]


def test_fields_accept_what_the_database_gives_and_refuse_nonsense() -> None:
    calendar = BranchCalendar(weekly_closed=[0, 0], monthly_closed=[[-1, 3]], closed_dates=[d("2026-01-01")])  # type: ignore[arg-type]
    assert calendar.weekly_closed == frozenset({0})
    assert calendar.monthly_closed == frozenset({(-1, 3)})
    assert calendar == BranchCalendar(frozenset({0}), frozenset({(-1, 3)}), frozenset({d("2026-01-01")}))
    assert hash(calendar) == hash(BranchCalendar(frozenset({0}), frozenset({(-1, 3)}), frozenset({d("2026-01-01")})))
    for bad in ({7}, {-1}):
        with pytest.raises(ShokaError) as caught:
            BranchCalendar(weekly_closed=frozenset(bad))
        assert caught.value.field == "weekly_closed" and caught.value.status == 422
    for pair in ((0, 1), (6, 1), (-6, 1), (1, 7), (1, -1)):
        with pytest.raises(ShokaError) as caught:
            BranchCalendar(monthly_closed=frozenset({pair}))
        assert caught.value.field == "monthly_closed"
    with pytest.raises(ShokaError):
        BranchCalendar(monthly_closed=[[1, 2, 3]])  # type: ignore[list-item]


# --- national holidays and plan_year ----------------------------------------------------------------------------

# 内閣府「国民の祝日」2026 (令和8年)
HOLIDAYS_2026 = [
    ("2026-01-01", "元日"), ("2026-01-12", "成人の日"), ("2026-02-11", "建国記念の日"), ("2026-02-23", "天皇誕生日"),
    ("2026-03-20", "春分の日"), ("2026-04-29", "昭和の日"), ("2026-05-03", "憲法記念日"), ("2026-05-04", "みどりの日"),
    ("2026-05-05", "こどもの日"), ("2026-05-06", "休日"), ("2026-07-20", "海の日"), ("2026-08-11", "山の日"),
    ("2026-09-21", "敬老の日"), ("2026-09-22", "休日"), ("2026-09-23", "秋分の日"), ("2026-10-12", "スポーツの日"),
    ("2026-11-03", "文化の日"), ("2026-11-23", "勤労感謝の日"),
]
MONDAY_HOLIDAYS_2026 = ["01-12", "02-23", "05-04", "07-20", "09-21", "10-12", "11-23"]


def test_national_holidays_2026() -> None:
    holidays = national_holidays(2026)
    assert [x for x, _ in holidays] == [d(x) for x, _ in HOLIDAYS_2026]
    for (day, name), (_, published) in zip(holidays, HOLIDAYS_2026, strict=True):
        # the Cabinet Office calls substitute days "休日"; jpholiday names them after the holiday they replace
        assert name == published or published == "休日", (day, name)
    assert dict(holidays)[d("2026-05-06")] == "憲法記念日 振替休日"
    assert dict(holidays)[d("2026-09-22")] == "国民の休日"
    assert [x for x, _ in national_holidays(2019)][:6] == [d("2019-01-01"), d("2019-01-14"), d("2019-02-11"),
                                                            d("2019-03-21"), d("2019-04-29"), d("2019-04-30")]


def monday_library() -> YearPattern:
    return YearPattern(weekly_closed=frozenset({0}))


def planned_calendar(pattern: YearPattern, *years: int) -> BranchCalendar:
    return calendar_from_plan(pattern, [p for year in years for p in plan_year(year, pattern)])


def test_plan_2026_monday_closure_every_day() -> None:
    pattern = monday_library()
    calendar = planned_calendar(pattern, 2026)
    holidays = {d(x) for x, _ in HOLIDAYS_2026}
    monday_holidays = {d("2026-" + x) for x in MONDAY_HOLIDAYS_2026}
    # hand-worked: the Tuesday after each Monday holiday, except Golden Week (5/5, 5/6 are holidays → Thu 5/7)
    # and Silver Week (9/22, 9/23 are holidays → Thu 9/24)
    moved = {d(x) for x in ("2026-01-13", "2026-02-24", "2026-05-07", "2026-07-21", "2026-09-24", "2026-10-13",
                            "2026-11-24")}
    new_year = {d(x) for x in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-12-29", "2026-12-30", "2026-12-31")}
    for day in days(d("2026-01-01"), d("2026-12-31")):
        expected_closed = (day in new_year or day in moved or (day in holidays and day not in monday_holidays)
                           or (day.weekday() == 0 and day not in monday_holidays))
        assert calendar.is_open(day) == (not expected_closed), day


def test_plan_2026_reasons() -> None:
    plan = {p.day: p for p in plan_year(2026, monday_library())}
    assert plan[d("2026-01-12")] == PlannedDay(d("2026-01-12"), False, "成人の日（開館）")
    assert plan[d("2026-01-13")] == PlannedDay(d("2026-01-13"), True, "振替休館")
    assert plan[d("2026-01-01")] == PlannedDay(d("2026-01-01"), True, "年末年始")
    assert plan[d("2026-04-29")] == PlannedDay(d("2026-04-29"), True, "昭和の日")
    assert plan[d("2026-05-06")].reason == "憲法記念日 振替休日"
    assert plan[d("2026-05-07")].reason == "振替休館"
    assert [p.day for p in plan.values()] == sorted(plan)
    assert all(p.day.year == 2026 for p in plan.values())
    # an ordinary Monday is left to the weekly rule
    assert d("2026-01-19") not in plan


def test_golden_week_2026() -> None:
    calendar = planned_calendar(monday_library(), 2026)
    expected = {"04-28": True, "04-29": False, "04-30": True, "05-01": True, "05-02": True, "05-03": False,
                "05-04": True, "05-05": False, "05-06": False, "05-07": False, "05-08": True, "05-09": True,
                "05-10": True, "05-11": False, "05-12": True}
    assert {x: calendar.is_open(d("2026-" + x)) for x in expected} == expected


def test_new_year_closure_spans_the_turn_of_the_year() -> None:
    pattern = monday_library()
    calendar = planned_calendar(pattern, 2025, 2026, 2027)
    for day in days(d("2025-12-29"), d("2026-01-03")) + days(d("2026-12-29"), d("2027-01-03")):
        assert not calendar.is_open(day), day
    assert calendar.next_open_day(d("2025-12-28")) == d("2025-12-28")  # Sunday
    assert calendar.next_open_day(d("2025-12-29")) == d("2026-01-04")  # Sunday, first day after the closure
    assert calendar.next_open_day(d("2026-12-29")) == d("2027-01-05")  # 1/4 is a Monday
    assert calendar.is_open(d("2027-01-11")) and not calendar.is_open(d("2027-01-12"))  # 成人の日 2027
    # 2024-01-01 (元日) is a Monday inside the closure: no opening and no 振替休館 for it
    plan = plan_year(2024, pattern)
    january = [p for p in plan if p.day.month == 1]
    assert [(p.day.day, p.closed, p.reason) for p in january] == [
        (1, True, "年末年始"), (2, True, "年末年始"), (3, True, "年末年始"),
        (8, False, "成人の日（開館）"), (9, True, "振替休館")]


def test_closure_within_one_year_and_none() -> None:
    plan = plan_year(2026, YearPattern(weekly_closed=frozenset({0}), new_year_closure=((12, 28), (12, 31))))
    assert [p.day for p in plan if p.reason == "年末年始"] == days(d("2026-12-28"), d("2026-12-31"))
    plan = plan_year(2026, YearPattern(weekly_closed=frozenset({0}), new_year_closure=None))
    assert plan[0] == PlannedDay(d("2026-01-01"), True, "元日")
    assert "年末年始" not in {p.reason for p in plan}


def test_last_thursday_closure_pushes_the_moved_closure_on() -> None:
    pattern = YearPattern(weekly_closed=frozenset({0}), monthly_closed=frozenset({(-1, 3)}))
    calendar = planned_calendar(pattern, 2026)
    plan = {p.day: p for p in plan_year(2026, pattern)}
    # 9/21 敬老の日 opens; 9/22, 9/23 are holidays and 9/24 is the last Thursday anyway → 振替休館 on Friday 9/25
    assert plan[d("2026-09-25")].reason == "振替休館"
    assert d("2026-09-24") not in plan
    for x, is_open in {"09-21": True, "09-22": False, "09-23": False, "09-24": False, "09-25": False,
                       "09-26": True}.items():
        assert calendar.is_open(d("2026-" + x)) == is_open, x
    last_thursdays = {d("2026-" + x) for x in ("01-29", "02-26", "03-26", "04-30", "05-28", "06-25", "07-30",
                                               "08-27", "09-24", "10-29", "11-26", "12-31")}
    for day in days(d("2026-01-01"), d("2026-12-31")):
        if day in last_thursdays:
            assert not calendar.is_open(day), day


def test_two_weekly_closing_days_both_on_holidays() -> None:
    # closed Monday and Tuesday; 2026-09-21 (Mon) and 9/22 (Tue) are holidays: both open, closures on 9/24, 9/25
    pattern = YearPattern(weekly_closed=frozenset({0, 1}))
    calendar = planned_calendar(pattern, 2026)
    expected = {"09-21": True, "09-22": True, "09-23": False, "09-24": False, "09-25": False, "09-26": True,
                "05-04": True, "05-05": True, "05-06": False, "05-07": False, "05-08": False, "05-09": True}
    assert {x: calendar.is_open(d("2026-" + x)) for x in expected} == expected


def test_library_open_on_holidays() -> None:
    # 「月曜休館（祝日の場合は開館し、翌平日休館）」, open on every other holiday
    pattern = YearPattern(weekly_closed=frozenset({0}), close_on_national_holidays=False)
    calendar = planned_calendar(pattern, 2026)
    assert all(calendar.is_open(d(x)) for x, _ in HOLIDAYS_2026 if not x.startswith("2026-01-01"))
    expected = {"05-04": True, "05-05": True, "05-06": True, "05-07": False, "09-21": True, "09-22": True,
                "09-23": True, "09-24": False, "01-12": True, "01-13": False}
    assert {x: calendar.is_open(d("2026-" + x)) for x in expected} == expected
    assert not calendar.is_open(d("2026-01-01"))  # still 年末年始


def test_closed_mondays_stay_closed_when_told() -> None:
    pattern = YearPattern(weekly_closed=frozenset({0}), open_on_holiday_falling_on_weekly_closure=False)
    plan = plan_year(2026, pattern)
    assert "振替休館" not in {p.reason for p in plan}
    assert all(p.closed for p in plan)
    assert PlannedDay(d("2026-01-12"), True, "成人の日") in plan
    calendar = calendar_from_plan(pattern, plan)
    assert not calendar.is_open(d("2026-01-12")) and calendar.is_open(d("2026-01-13"))
    # neither closing nor opening on holidays: only 年末年始 is stored
    plan = plan_year(2026, YearPattern(weekly_closed=frozenset({0}), close_on_national_holidays=False,
                                       open_on_holiday_falling_on_weekly_closure=False))
    assert {p.reason for p in plan} == {"年末年始"}


def test_a_holiday_of_the_previous_year_moves_a_closure_into_this_one() -> None:
    # open on Fridays only; 2017-12-23 (天皇誕生日, a Saturday) opens, and the next Friday that is neither a
    # holiday nor in 年末年始 is 2018-01-05
    pattern = YearPattern(weekly_closed=frozenset({0, 1, 2, 3, 5, 6}))
    assert PlannedDay(d("2017-12-23"), False, "天皇誕生日（開館）") in plan_year(2017, pattern)
    assert PlannedDay(d("2018-01-05"), True, "振替休館") in plan_year(2018, pattern)
    assert d("2018-01-05") not in {p.day for p in plan_year(2017, pattern)}


def test_year_pattern_refuses_nonsense() -> None:
    with pytest.raises(ShokaError) as caught:
        YearPattern(weekly_closed=frozenset(range(7)))
    assert caught.value.field == "weekly_closed"
    for closure in (((12, 32), (1, 3)), ((13, 1), (1, 3)), ((12, 29), (2, 30))):
        with pytest.raises(ShokaError) as caught:
            YearPattern(weekly_closed=frozenset({0}), new_year_closure=closure)
        assert caught.value.field == "new_year_closure"
    YearPattern(weekly_closed=frozenset({0}), new_year_closure=((2, 29), (3, 1)))  # a leap day is a date


def sweep_oracle(year: int, pattern: YearPattern) -> dict[date, bool]:
    """The intended opening days, phrased differently from plan_year: walk the days in order, count the
    closures owed by holidays that opened on a weekly closing day, and pay each on the next ordinary open day."""
    holidays = {x for y in (year - 1, year, year + 1) for x, _ in national_holidays(y)}
    start, end = date(year - 1, 1, 1), date(year + 1, 12, 31)
    monthly = oracle_monthly_closed(set(pattern.monthly_closed), start, end)

    def new_year(x: date) -> bool:
        if pattern.new_year_closure is None:
            return False
        first = date(x.year, *pattern.new_year_closure[0])
        last = date(x.year, *pattern.new_year_closure[1])
        return first <= x <= last if first <= last else x >= first or x <= last

    owed = 0
    result: dict[date, bool] = {}
    for x in days(start, end):
        weekly = x.weekday() in pattern.weekly_closed
        if new_year(x):
            is_open = False
        elif x in holidays:
            if weekly and pattern.open_on_holiday_falling_on_weekly_closure and x not in monthly:
                is_open = True
                owed += 1
            else:
                is_open = not (pattern.close_on_national_holidays or weekly or x in monthly)
        elif weekly or x in monthly:
            is_open = False
        elif owed:
            is_open = False
            owed -= 1
        else:
            is_open = True
        result[x] = is_open
    return {x: v for x, v in result.items() if x.year == year}


PATTERNS = [
    YearPattern(weekly_closed=frozenset({0})),
    YearPattern(weekly_closed=frozenset({0}), monthly_closed=frozenset({(-1, 3)})),
    YearPattern(weekly_closed=frozenset({0, 1}), monthly_closed=frozenset({(1, 2)})),
    YearPattern(weekly_closed=frozenset({0}), close_on_national_holidays=False),
    YearPattern(weekly_closed=frozenset({0}), open_on_holiday_falling_on_weekly_closure=False),
    YearPattern(weekly_closed=frozenset({0, 6}), monthly_closed=frozenset({(-1, 0)}), new_year_closure=None),
    YearPattern(weekly_closed=frozenset({3}), new_year_closure=((12, 28), (1, 4))),
    YearPattern(weekly_closed=frozenset(), monthly_closed=frozenset({(2, 0), (4, 0)})),
]


@pytest.mark.parametrize("index", range(len(PATTERNS)))
def test_plan_year_against_the_sweep_2020_2030(index: int) -> None:
    pattern = PATTERNS[index]
    for year in range(2020, 2031):
        calendar = calendar_from_plan(pattern, plan_year(year, pattern))
        expected = sweep_oracle(year, pattern)
        wrong = [x for x, is_open in expected.items() if calendar.is_open(x) != is_open]
        assert wrong == [], (year, wrong[:5])
