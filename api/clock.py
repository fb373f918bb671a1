"""The library's clock (開館日・返却期限の「今日」): every Shoka process counts days in Japan Standard Time.

Due dates, overdue days, block and hold deadlines are computed both in Python (`date.today()`) and in SQL
(`current_date`); the two must name the same day whatever the machine's own time zone is. On a UTC server
(a container, a cloud VM) they used to differ from midnight to 09:00 JST: a loan made then was counted a
day short overdue and a block entered that night did not yet apply. Importing this module (api.db and
api.config do) sets the process's time zone; PostgreSQL sessions get the same one from `SESSION_OPTIONS`.
"""

from __future__ import annotations

import os
import time

LIBRARY_TIMEZONE = "Asia/Tokyo"
SESSION_OPTIONS = f"-c TimeZone={LIBRARY_TIMEZONE}"  # libpq `options` for every Shoka connection


def use_library_time() -> None:
    """Make local time in this process (and the processes it starts) the library's."""
    if os.environ.get("TZ") != LIBRARY_TIMEZONE:
        os.environ["TZ"] = LIBRARY_TIMEZONE
        time.tzset()


use_library_time()
