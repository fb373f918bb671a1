"""A damaged or half-made data directory gets a clear message or is repaired; data is never deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from api.config import ConfigError, load_settings
from api.runtime.datadir import DataDirError, ServeInfo, ServeLock, load_secrets, prepare
from api.runtime.postgres import EmbeddedPostgres


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["SHOKA_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_half_finished_initdb_is_moved_aside_and_redone(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.pgdata.mkdir(parents=True)
    (pg.pgdata / "base").mkdir()  # what an interrupted initdb leaves: no PG_VERSION, no marker
    try:
        assert pg.ensure_running() is True
        aside = list(pg.root.glob("data.incomplete-*"))
        assert len(aside) == 1 and (aside[0] / "base").is_dir()
        with psycopg.connect(pg.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Stop, leave a stale postmaster.pid naming a dead process, and start again.
        pg.stop()
        (pg.pgdata / "postmaster.pid").write_text("999999\n" + str(pg.pgdata) + "\n0\n55432\n\n\n\nready\n")
        assert pg.running_port() is None
        assert pg.ensure_running() is True
        assert pg.ensure_running() is False  # already running: reused, not started twice
    finally:
        pg.stop()


def test_lost_database_directory_is_reported_not_recreated(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.root.mkdir(parents=True)
    pg.marker.write_text("initialised earlier\n")
    with pytest.raises(DataDirError, match="missing or damaged"):
        pg.ensure_running()
    result = _cli(tmp_path, "migrate")
    assert result.returncode == 1 and "Restore it from a backup" in result.stderr
    assert "Traceback" not in result.stderr


def test_damaged_secrets_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{ half written")
    with pytest.raises(DataDirError, match=r"secrets\.json is damaged"):
        load_secrets(tmp_path)
    result = _cli(tmp_path, "migrate")
    assert result.returncode == 1 and "secrets.json" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "secrets.json").read_text() == "{ half written"  # left for the operator


def test_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    first = load_secrets(tmp_path)
    assert load_secrets(tmp_path) == first
    assert oct((tmp_path / "secrets.json").stat().st_mode & 0o777) == "0o600"


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "var"
    f.write_text("")
    with pytest.raises(DataDirError, match="not a directory"):
        prepare(f)


def test_serve_lock_is_exclusive_and_reports_its_holder(tmp_path: Path) -> None:
    first, second = ServeLock(tmp_path), ServeLock(tmp_path)
    first.acquire(ServeInfo(pid=4242, started_at=0, opac_port=8000, staff_port=8001))
    try:
        holder = second.holder()
        assert holder is not None and holder.pid == 4242
        with pytest.raises(DataDirError, match=r"already running.*pid 4242"):
            second.acquire(ServeInfo(pid=1, started_at=0, opac_port=1, staff_port=2))
    finally:
        first.release()
    assert second.holder() is None


@pytest.mark.parametrize("name,value", [("SHOKA_OPAC_PORT", "abc"), ("SHOKA_STAFF_PORT", "70000"),
                                        ("DATABASE_URL", "mysql://x"), ("REDIS_URL", "http://x")])
def test_bad_settings_name_the_variable_and_value(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in str(err.value) and value in str(err.value)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SHOKA_DATA_DIR", "SHOKA_OPAC_PORT", "SHOKA_STAFF_PORT", "DATABASE_URL", "REDIS_URL",
                "OPENSEARCH_URL", "SEARCH_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings()
    assert (s.opac_port, s.staff_port, s.host) == (8000, 8001, "127.0.0.1")
    assert s.data_dir == Path("var").absolute() and s.embedded_postgres and s.embedded_valkey
    assert s.search_engine == "tantivy"
    monkeypatch.setenv("OPENSEARCH_URL", "http://search:9200")
    assert load_settings().search_engine == "opensearch"


def test_lost_secrets_are_not_regenerated_for_an_existing_database(tmp_path: Path) -> None:
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "initialized").write_text("x")
    with pytest.raises(DataDirError, match=r"Restore secrets\.json"):
        load_secrets(tmp_path)
    assert not (tmp_path / "secrets.json").exists()
