"""The production topology (compose.yaml, Dockerfile, .env.example) keeps its promises.

Most of all: the internet-facing OPAC never receives the main database URL or password. The
checks are plain functions so that the tests at the bottom can prove they reject a broken file.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

REQUIRED_SERVICES = ("postgres", "opensearch", "valkey", "staff", "opac", "worker", "scheduler", "proxy")
ONE_SHOT_SERVICES = ("migrate",)
FORBIDDEN_OPAC_VARIABLES = ("DATABASE_URL", "POSTGRES_PASSWORD")
MAIN_DB_CREDENTIALS = ("POSTGRES_USER", "POSTGRES_PASSWORD")

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, $NAME
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])[^}]*)?\}")
_BARE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


# -- loading ------------------------------------------------------------------------------------

def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def parse_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip().strip("\"'")
    return values


def env_files(service: dict[str, Any]) -> list[Path]:
    """The env_file entries of a service (string, list of strings, or list of {path: ...})."""
    raw = service.get("env_file") or []
    entries = [raw] if isinstance(raw, str | dict) else list(raw)
    paths = []
    for entry in entries:
        path = ROOT / (entry["path"] if isinstance(entry, dict) else entry)
        # .env is never in the repository; .env.example is its template and defines the same names.
        if path.name == ".env" and not path.exists():
            path = path.with_name(".env.example")
        paths.append(path)
    return paths


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """Everything a service's container gets: its env_file files, then `environment:`."""
    env: dict[str, str] = {}
    for path in env_files(service):
        assert path.exists(), f"env_file {path} does not exist"
        env.update(parse_env_file(path))
    raw = service.get("environment") or {}
    if isinstance(raw, dict):
        env.update({str(k): "" if v is None else str(v) for k, v in raw.items()})
    else:
        for item in raw:
            key, _, value = str(item).partition("=")
            env[key] = value
    return env


def referenced_variables(text: str) -> dict[str, bool]:
    """Variables compose interpolates in `text` → whether each is required (has no default)."""
    text = text.replace("$$", "")  # $$ is an escaped dollar, left for the container's shell
    found: dict[str, bool] = {}
    for match in _BRACED.finditer(text):
        name, operator = match.group(1), match.group(2) or ""
        required = operator.lstrip(":") in ("", "?")
        found[name] = found.get(name, False) or required
    for match in _BARE.finditer(_BRACED.sub("", text)):
        found[match.group(1)] = True
    return found


def variables_in(value: str) -> set[str]:
    return set(referenced_variables(value))


# -- checks (each returns a list of problems; empty means fine) ------------------------------------

def missing_services(compose: dict[str, Any]) -> list[str]:
    return [name for name in REQUIRED_SERVICES if name not in compose.get("services", {})]


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        check = service.get("healthcheck") or {}
        if name != "proxy" and (not check.get("test") or check.get("disable")):
            problems.append(f"{name} has no healthcheck")
        if check and check.get("test") in (["NONE"], "NONE"):
            problems.append(f"{name} disables its healthcheck")
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name} does not have restart: unless-stopped")
    return problems


def opac_environment_problems(compose: dict[str, Any]) -> list[str]:
    opac = compose["services"]["opac"]
    env = service_environment(opac)
    problems = [f"opac receives {name}" for name in FORBIDDEN_OPAC_VARIABLES if name in env]
    for key, value in env.items():
        leaked = variables_in(value) & set(MAIN_DB_CREDENTIALS)
        if leaked:
            problems.append(f"opac's {key} is built from {', '.join(sorted(leaked))}")
    url = env.get("OPAC_DATABASE_URL", "")
    if not url:
        problems.append("opac has no OPAC_DATABASE_URL")
    else:
        used = variables_in(url)
        if "OPAC_DB_USER" not in used:
            problems.append("opac's OPAC_DATABASE_URL does not use ${OPAC_DB_USER}")
        if "OPAC_DB_PASSWORD" not in used:
            problems.append("opac's OPAC_DATABASE_URL does not use ${OPAC_DB_PASSWORD}")
    return problems


SERVICE_TOKEN_HOLDERS = ("staff", "opac")


def service_channel_problems(compose: dict[str, Any]) -> list[str]:
    """My Library: the OPAC reaches the staff app's internal API with the service token, and no other
    service holds that token (a worker compromise must not reach the OPAC's channel)."""
    services = compose["services"]
    problems = []
    for name in SERVICE_TOKEN_HOLDERS:
        value = service_environment(services[name]).get("SHOKA_SERVICE_TOKEN", "")
        if referenced_variables(value) != {"SHOKA_SERVICE_TOKEN": True}:
            problems.append(f"{name}'s SHOKA_SERVICE_TOKEN is not the required ${{SHOKA_SERVICE_TOKEN}}: {value!r}")
    for name, service in services.items():
        if name not in SERVICE_TOKEN_HOLDERS and "SHOKA_SERVICE_TOKEN" in service_environment(service):
            problems.append(f"{name} receives SHOKA_SERVICE_TOKEN")
    url = service_environment(services["opac"]).get("SHOKA_INTERNAL_URL", "")
    if "staff:8001" not in url:
        problems.append(f"opac's SHOKA_INTERNAL_URL does not point at staff:8001: {url!r}")
    return problems


def named_volume_problems(compose: dict[str, Any]) -> list[str]:
    declared = set((compose.get("volumes") or {}).keys())
    problems = []
    for name in ("postgres", "opensearch", "valkey"):
        mounts = compose["services"][name].get("volumes") or []
        sources = {m.split(":", 1)[0] if isinstance(m, str) else m.get("source") for m in mounts}
        if not sources & declared:
            problems.append(f"{name} stores its data in no named volume")
    return problems


def published_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                ports.add(int(str(entry["published"]).split("-")[0]))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        # [ip:]published:target, or a bare target that Docker publishes on a random port (0 here)
        ports.add(int(parts[-2].split("-")[0]) if len(parts) >= 2 and parts[-2] else 0)
    return ports


def dockerfile_user_problems(text: str) -> list[str]:
    users = [line.split(None, 1)[1].strip() for line in text.splitlines()
             if line.strip().upper().startswith("USER ") and len(line.split()) > 1]
    if not users:
        return ["Dockerfile has no USER line: the app would run as root"]
    name = users[-1].split(":")[0]
    return [f"Dockerfile's last USER is {name}"] if name in ("root", "0") else []


def undefined_variables(compose_text: str, env_example: dict[str, str]) -> list[str]:
    required = [name for name, needed in referenced_variables(compose_text).items() if needed]
    return sorted(name for name in required if name not in env_example)


# -- the real files --------------------------------------------------------------------------------

def test_required_services_exist(compose: dict[str, Any]) -> None:
    assert missing_services(compose) == []


def test_long_running_services_have_healthchecks_and_restart(compose: dict[str, Any]) -> None:
    assert healthcheck_problems(compose) == []


def test_opac_gets_no_main_database_credentials(compose: dict[str, Any]) -> None:
    assert opac_environment_problems(compose) == []


def test_opac_reaches_the_internal_api_with_the_service_token(compose: dict[str, Any]) -> None:
    assert service_channel_problems(compose) == []
    assert service_environment(compose["services"]["opac"]).get("SHOKA_COOKIE_SECURE") == "true"
    assert parse_env_file(ENV_EXAMPLE)["SHOKA_SERVICE_TOKEN"].startswith("change-me")


def test_internal_services_use_the_main_database(services: dict[str, Any]) -> None:
    for name in ("staff", "worker", "scheduler", "migrate"):
        url = service_environment(services[name]).get("DATABASE_URL", "")
        assert {"POSTGRES_USER", "POSTGRES_PASSWORD"} <= variables_in(url), f"{name}: {url!r}"


def test_opac_mounts_no_shared_data(services: dict[str, Any]) -> None:
    shared = {m.split(":", 1)[0] for name in ("staff", "worker") for m in services[name].get("volumes") or []}
    opac = {m.split(":", 1)[0] if isinstance(m, str) else m.get("source")
            for m in services["opac"].get("volumes") or []}
    assert not opac & shared


def test_data_services_use_named_volumes(compose: dict[str, Any]) -> None:
    assert named_volume_problems(compose) == []
    for volume in ("postgres_data", "opensearch_data", "valkey_data", "caddy_data", "shoka_data"):
        assert volume in compose["volumes"]


def test_only_the_proxy_publishes_ports(services: dict[str, Any]) -> None:
    assert 443 in published_ports(services["proxy"])
    assert 80 in published_ports(services["proxy"])
    for name, service in services.items():
        if name != "proxy":
            assert not service.get("ports"), f"{name} publishes {service['ports']}"


def test_data_services_are_on_an_internal_network(compose: dict[str, Any]) -> None:
    for name in ("postgres", "opensearch", "valkey"):
        for network in compose["services"][name]["networks"]:
            assert compose["networks"][network].get("internal") is True, f"{name} on {network}"


def test_deploy_files_exist(services: dict[str, Any]) -> None:
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    assert "opac:8000" in caddyfile and "staff:8001" in caddyfile
    assert "remote_ip {$STAFF_ALLOWED_NETWORKS}" in caddyfile
    assert any(str(v).startswith("./deploy/Caddyfile:") for v in services["proxy"]["volumes"])
    scripts = list((ROOT / "deploy" / "postgres-init").glob("*.s[hq]*"))
    assert scripts and any("shoka_opac_reader" in s.read_text(encoding="utf-8") for s in scripts)
    assert any(str(v).startswith("./deploy/postgres-init:") for v in services["postgres"]["volumes"])


def test_dockerfile_runs_as_non_root() -> None:
    assert DOCKERFILE.exists()
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert dockerfile_user_problems(text) == []
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "-c constraints.txt" in text


def test_env_example_defines_every_required_variable() -> None:
    compose_text = COMPOSE.read_text(encoding="utf-8")
    assert {"POSTGRES_PASSWORD", "OPAC_DB_PASSWORD", "OPAC_HOST"} <= set(referenced_variables(compose_text))
    assert undefined_variables(compose_text, parse_env_file(ENV_EXAMPLE)) == []


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 or later) if this machine has it, else None."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "Docker Compose version v" in out:
            return cmd
    return None


def test_compose_config_is_valid() -> None:
    """Compose itself accepts the file with .env.example's values (needs no Docker daemon)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("docker compose is not installed")
    result = subprocess.run([*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_env_example_passwords_are_placeholders() -> None:
    env = parse_env_file(ENV_EXAMPLE)
    passwords = {k: v for k, v in env.items() if k.endswith("_PASSWORD")}
    assert passwords
    assert all(v.startswith("change-me") for v in passwords.values()), passwords


# -- the checks reject broken files ----------------------------------------------------------------

def test_check_rejects_database_url_in_opac(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["opac"]["environment"]["DATABASE_URL"] = "postgresql://x:y@postgres/shoka"
    assert "opac receives DATABASE_URL" in opac_environment_problems(broken)


def test_check_rejects_env_file_in_opac(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["opac"]["env_file"] = ".env"
    assert "opac receives POSTGRES_PASSWORD" in opac_environment_problems(broken)


def test_check_rejects_opac_url_with_main_user(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["opac"]["environment"]["OPAC_DATABASE_URL"] = \
        "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/shoka"
    problems = opac_environment_problems(broken)
    assert "opac's OPAC_DATABASE_URL does not use ${OPAC_DB_USER}" in problems
    assert any("POSTGRES_PASSWORD" in p for p in problems)


def test_check_rejects_a_broken_service_channel(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["environment"]["SHOKA_SERVICE_TOKEN"] = "${SHOKA_SERVICE_TOKEN}"
    del broken["services"]["opac"]["environment"]["SHOKA_SERVICE_TOKEN"]
    broken["services"]["staff"]["environment"]["SHOKA_SERVICE_TOKEN"] = "${SHOKA_SERVICE_TOKEN:-weak}"
    broken["services"]["opac"]["environment"]["SHOKA_INTERNAL_URL"] = "http://postgres:5432"
    problems = service_channel_problems(broken)
    assert "worker receives SHOKA_SERVICE_TOKEN" in problems
    assert any(p.startswith("opac's SHOKA_SERVICE_TOKEN") for p in problems)
    assert any(p.startswith("staff's SHOKA_SERVICE_TOKEN") for p in problems)
    assert any(p.startswith("opac's SHOKA_INTERNAL_URL") for p in problems)
    assert len(problems) == 4


def test_check_rejects_missing_healthcheck_and_service(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    del broken["services"]["worker"]["healthcheck"]
    del broken["services"]["valkey"]
    assert "worker has no healthcheck" in healthcheck_problems(broken)
    assert missing_services(broken) == ["valkey"]


def test_check_rejects_anonymous_volume(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["volumes"] = ["/var/lib/postgresql/data"]
    assert named_volume_problems(broken) == ["postgres stores its data in no named volume"]


def test_check_rejects_root_dockerfile() -> None:
    assert dockerfile_user_problems("FROM python:3.11-slim\nCMD [\"shoka\"]\n")
    assert dockerfile_user_problems("FROM x\nUSER shoka\nUSER root\n")
    assert not dockerfile_user_problems("FROM x\nUSER shoka:shoka\n")


def test_variable_parser() -> None:
    text = "a: ${REQ}\nb: ${ERR:?missing}\nc: ${DEF:-x}\nd: ${ALT:+y}\ne: $$ESCAPED $${ALSO}\nf: $BARE\n"
    assert referenced_variables(text) == {"REQ": True, "ERR": True, "DEF": False, "ALT": False, "BARE": True}
    assert undefined_variables(text, {"REQ": "1"}) == ["BARE", "ERR"]
    ports = ["80:80", "127.0.0.1:8443:443/tcp", {"target": 443, "published": "443"}, "9000"]
    assert published_ports({"ports": ports}) == {80, 8443, 443, 0}
