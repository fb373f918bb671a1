"""開館日カレンダー: which days a branch is open, and the yearly bulk entry (一括登録) of its closed days.

A branch's calendar is a weekly pattern (定期休館日), a monthly pattern (館内整理日, e.g. the last Thursday),
and dated exceptions: closed dates (祝日, 年末年始, 特別整理期間, ...) and open dates (a day opened although
the pattern closes it, e.g. a holiday Monday). Precedence, highest first:

1. a closed date always closes (an emergency closure wins over everything);
2. an open date opens, overriding the weekly and monthly patterns only;
3. a weekly or monthly closing day closes;
4. every other day is open.

Due dates and hold pickup deadlines (取置期限, "7 開館日") are computed from this; all functions are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import jpholiday

from api.errors import ShokaError, invalid

ONE_DAY = timedelta(days=1)
# How far next_open_day looks: a branch closed for longer than a year is misconfigured, not busy.
SEARCH_DAYS = 366


class CalendarError(ShokaError):
    """No open day within SEARCH_DAYS of a date: the branch calendar closes everything."""

    def __init__(self, day: date) -> None:
        super().__init__(
            "no_open_day",
            f"{day.isoformat()} から {SEARCH_DAYS} 日以内に開館日がありません。開館日カレンダーを確認してください。",
            f"No open day within {SEARCH_DAYS} days of {day.isoformat()}: check the branch calendar.",
            status=409)


def _weekdays(values: Iterable[int], field_name: str) -> frozenset[int]:
    result = frozenset(values)
    for weekday in result:
        if not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise invalid(field_name, weekday, "曜日は 0（月）〜 6（日）で指定してください。",
                          "a weekday is 0 (Monday) to 6 (Sunday)")
    return result


def _monthly(values: Iterable[Iterable[int]], field_name: str) -> frozenset[tuple[int, int]]:
    # Accepts lists as well as tuples: the database keeps them as JSON arrays.
    result: set[tuple[int, int]] = set()
    for value in values:
        pair = tuple(value)
        if (len(pair) != 2 or not all(isinstance(v, int) for v in pair)
                or pair[0] not in (1, 2, 3, 4, 5, -1, -2, -3, -4, -5) or not 0 <= pair[1] <= 6):
            raise invalid(field_name, list(pair),
                          "（第n, 曜日）で指定してください: n は 1〜5 または -1（最終）、曜日は 0〜6。",
                          "give (nth, weekday): nth 1 to 5 or -1 for the last, weekday 0 to 6")
        result.add((pair[0], pair[1]))
    return frozenset(result)


def nth_weekday_matches(day: date, nth: int, weekday: int) -> bool:
    """Whether `day` is the nth `weekday` of its month (第n○曜日); nth -1 is the last, -2 the one before it."""
    if day.weekday() != weekday:
        return False
    if nth > 0:
        return (day.day - 1) // 7 + 1 == nth
    # k-th from the end: k - 1 weeks later is still this month, k weeks later is not.
    weeks_left = -nth
    return (day + timedelta(weeks=weeks_left - 1)).month == day.month != (day + timedelta(weeks=weeks_left)).month


def _monthly_closed(day: date, monthly: frozenset[tuple[int, int]]) -> bool:
    return any(nth_weekday_matches(day, nth, weekday) for nth, weekday in monthly)


@dataclass(frozen=True)
class BranchCalendar:
    """One branch's opening days. Any iterable is accepted for the fields and frozen on creation."""

    weekly_closed: frozenset[int] = frozenset()
    monthly_closed: frozenset[tuple[int, int]] = frozenset()
    closed_dates: frozenset[date] = frozenset()
    open_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekly_closed", _weekdays(self.weekly_closed, "weekly_closed"))
        object.__setattr__(self, "monthly_closed", _monthly(self.monthly_closed, "monthly_closed"))
        object.__setattr__(self, "closed_dates", frozenset(self.closed_dates))
        object.__setattr__(self, "open_dates", frozenset(self.open_dates))

    def is_open(self, day: date) -> bool:
        """Closed dates first, then open dates, then the weekly and monthly patterns (see the module docstring)."""
        if day in self.closed_dates:
            return False
        if day in self.open_dates:
            return True
        return day.weekday() not in self.weekly_closed and not _monthly_closed(day, self.monthly_closed)

    def next_open_day(self, day: date) -> date:
        """`day` itself when open, else the first open day after it (searching SEARCH_DAYS days on)."""
        current = day
        for _ in range(SEARCH_DAYS + 1):
            if self.is_open(current):
                return current
            try:
                current += ONE_DAY
            except OverflowError:
                break
        raise CalendarError(day)

    def add_open_days(self, day: date, n: int) -> date:
        """The n-th open day after `day` (not counting `day`): the pickup deadline for "n 開館日".

        n = 0 gives next_open_day(day)."""
        if n < 0:
            raise invalid("n", n, "開館日数は 0 以上で指定してください。", "the number of open days must be 0 or more")
        current = self.next_open_day(day) if n == 0 else day
        for _ in range(n):
            try:
                current = self.next_open_day(current + ONE_DAY)
            except OverflowError as error:
                raise CalendarError(current) from error
        return current

    def open_days(self, start: date, end: date) -> list[date]:
        """The open days from `start` to `end`, both included; empty when end < start."""
        days = []
        current = start
        while current <= end:
            if self.is_open(current):
                days.append(current)
            if current == end:
                break
            current += ONE_DAY
        return days


def national_holidays(year: int) -> list[tuple[date, str]]:
    """国民の祝日・休日 of a year in date order, names in Japanese as jpholiday gives them
    (振替休日 as e.g. "憲法記念日 振替休日", 国民の休日 as "国民の休日")."""
    return sorted((day, name) for day, name in jpholiday.year_holidays(year))


@dataclass(frozen=True)
class YearPattern:
    """What the admin screen's 一括登録 asks for one branch and one year.

    new_year_closure is ((month, day), (month, day)), both included; when the first is after the second the
    closure spans the turn of the year (the default, 12/29〜1/3)."""

    weekly_closed: frozenset[int]
    close_on_national_holidays: bool = True
    open_on_holiday_falling_on_weekly_closure: bool = True
    new_year_closure: tuple[tuple[int, int], tuple[int, int]] | None = ((12, 29), (1, 3))
    monthly_closed: frozenset[tuple[int, int]] = frozenset()

    def __post_init__(self) -> None:
        weekly = _weekdays(self.weekly_closed, "weekly_closed")
        if len(weekly) == 7:
            raise invalid("weekly_closed", sorted(weekly), "毎日休館にはできません。",
                          "a branch cannot close every day")
        object.__setattr__(self, "weekly_closed", weekly)
        object.__setattr__(self, "monthly_closed", _monthly(self.monthly_closed, "monthly_closed"))
        if self.new_year_closure is not None:
            start, end = self.new_year_closure
            for month, day in (start, end):
                try:
                    date(2000, month, day)  # a leap year, so 2/29 is accepted
                except (TypeError, ValueError) as error:
                    raise invalid("new_year_closure", [month, day], "月日が正しくありません。",
                                  "not a valid month and day") from error
            object.__setattr__(self, "new_year_closure", ((start[0], start[1]), (end[0], end[1])))


@dataclass(frozen=True)
class PlannedDay:
    day: date
    closed: bool
    reason: str


def _in_closure(day: date, closure: tuple[tuple[int, int], tuple[int, int]] | None) -> bool:
    if closure is None:
        return False
    start, end = closure
    key = (day.month, day.day)
    if start <= end:
        return start <= key <= end
    return key >= start or key <= end


def plan_year(year: int, pattern: YearPattern) -> list[PlannedDay]:
    """The dated exceptions to store for `year` (closed=True: closed_dates, closed=False: open_dates), in date
    order, one per date, so that BranchCalendar(pattern.weekly_closed, pattern.monthly_closed, closed, open)
    gives the intended opening days. The weekly and monthly patterns themselves are not listed.

    Rules, applied to the national holidays (national_holidays) in date order:

    1. 年末年始: every day of new_year_closure closes (reason "年末年始"), holidays inside it included; they are
       never opened and never cause a 振替休館.
    2. A holiday on a weekly closing day, when open_on_holiday_falling_on_weekly_closure is set and the day is
       not also a monthly closing day: it opens (reason "<祝日名>（開館）"), whatever close_on_national_holidays
       says, and the closure moves to the first later day that is not a holiday, not a weekly or monthly
       closing day, not in the 年末年始 closure and not already a 振替休館 (reason "振替休館"), so the branch
       keeps as many closed days as its pattern gives. A holiday of the previous year can move a closure into
       this year.
    3. Any other holiday closes (reason: its name) when close_on_national_holidays is set, even when the pattern
       closes it anyway, so the screen shows why; otherwise it is left to the pattern.
    """
    holidays = {day: name for y in (year - 1, year, year + 1) for day, name in national_holidays(y)}
    weekly = pattern.weekly_closed
    monthly = pattern.monthly_closed
    planned: dict[date, PlannedDay] = {}

    def close(day: date, reason: str) -> None:
        planned[day] = PlannedDay(day, True, reason)

    current = date(year - 1, 1, 1)
    while current <= date(year + 1, 12, 31):
        if _in_closure(current, pattern.new_year_closure):
            close(current, "年末年始")
        current += ONE_DAY

    def closed_anyway(day: date) -> bool:
        return (day in holidays or day.weekday() in weekly or _monthly_closed(day, monthly)
                or (day in planned and planned[day].closed))

    for day in sorted(d for d in holidays if d.year in (year - 1, year)):
        name = holidays[day]
        if day in planned:  # inside 年末年始
            continue
        if (day.weekday() in weekly and pattern.open_on_holiday_falling_on_weekly_closure
                and not _monthly_closed(day, monthly)):
            planned[day] = PlannedDay(day, False, f"{name}（開館）")
            moved = day + ONE_DAY
            while closed_anyway(moved):  # ends: not every weekday is closed (YearPattern checks)
                moved += ONE_DAY
            close(moved, "振替休館")
        elif pattern.close_on_national_holidays:
            close(day, name)
    return [planned[day] for day in sorted(planned) if day.year == year]


def calendar_from_plan(pattern: YearPattern, planned: Iterable[PlannedDay]) -> BranchCalendar:
    """The calendar a branch gets from a pattern and its stored plan (the rows of one or more years)."""
    rows = list(planned)
    return BranchCalendar(weekly_closed=pattern.weekly_closed, monthly_closed=pattern.monthly_closed,
                          closed_dates=frozenset(p.day for p in rows if p.closed),
                          open_dates=frozenset(p.day for p in rows if not p.closed))


__all__ = ["BranchCalendar", "CalendarError", "PlannedDay", "YearPattern", "calendar_from_plan",
           "national_holidays", "nth_weekday_matches", "plan_year"]
