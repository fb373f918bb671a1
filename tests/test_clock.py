"""The library's clock: Python's `date.today()` and PostgreSQL's `current_date` name the same (JST) day on a
machine whose own time zone is not Japan's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from api import db

ROOT = Path(__file__).resolve().parent.parent


def test_a_process_on_a_utc_machine_counts_days_in_japan_time() -> None:
    code = ("import time; assert time.timezone == 0, time.tzname; from api import db; "
            "from datetime import date, datetime; from zoneinfo import ZoneInfo; "
            "print(time.timezone, time.strftime('%Z'), date.today() == datetime.now(ZoneInfo('Asia/Tokyo')).date())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "TZ": "UTC"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["-32400", "JST", "True"]


def test_database_sessions_use_the_library_time_zone_whatever_the_server_default(db_url: str) -> None:
    query = "SELECT current_setting('TimeZone') AS tz, source FROM pg_settings WHERE name = 'TimeZone'"
    with db.connect(db_url) as conn:
        assert conn.execute(query).fetchone() == {"tz": "Asia/Tokyo", "source": "client"}
    with db.pool(db_url).connection() as conn:
        assert conn.execute(query).fetchone() == {"tz": "Asia/Tokyo", "source": "client"}
