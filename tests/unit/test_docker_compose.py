"""The docker compose stack and its image hold together: services, connections, volumes, init."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
COMMON: dict[str, Any] = COMPOSE["x-airflow-common"]
COMMON_ENV: dict[str, str] = COMMON["environment"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()

AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
]
AIRFLOW_IMAGE_SERVICES = [*AIRFLOW_SERVICES, "airflow-init"]
OTHER_SERVICES = ["postgres", "redis", "sandbox", "partner-db", "sftp"]
CONNECTIONS = ["grip_default", "grip_ledger", "demo_partner_db", "demo_sftp"]
INTERNAL_PORTS = {"sandbox": 8900, "postgres": 5432, "partner-db": 5432, "sftp": 22}


def connection(conn_id: str) -> dict[str, Any]:
    return dict(json.loads(COMMON_ENV[f"AIRFLOW_CONN_{conn_id.upper()}"]))


def container_paths(service: dict[str, Any]) -> dict[str, str]:
    """Map each mount target of a service to its source (short and long volume syntax)."""
    paths = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        paths[target] = source
    return paths


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(" ", 1)[0], line.split(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_stack_has_every_service():
    assert set(SERVICES) == {*AIRFLOW_IMAGE_SERVICES, *OTHER_SERVICES}


@pytest.mark.parametrize("name", AIRFLOW_IMAGE_SERVICES)
def test_every_airflow_service_shares_the_common_block(name):
    service = SERVICES[name]
    assert service["image"] == COMMON["image"]
    assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert service["user"] == COMMON["user"]
    missing = {k: v for k, v in COMMON_ENV.items() if service["environment"].get(k) != v}
    assert missing == {}
    assert service["volumes"] == COMMON["volumes"]


def test_the_common_environment_runs_celery_on_postgres_and_redis():
    env = COMMON_ENV
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert re.fullmatch(r"\$\{AIRFLOW_FERNET_KEY:-[^}]*\}", env["AIRFLOW__CORE__FERNET_KEY"])
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("simple_auth_manager.SimpleAuthManager")
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "${GRIP_ADMIN_USER:-admin}:admin"


@pytest.mark.parametrize("conn_id", CONNECTIONS)
def test_each_connection_points_at_a_service_of_the_stack(conn_id):
    conn = connection(conn_id)
    if conn["conn_type"] == "grip":
        match = re.fullmatch(r"http://([a-z-]+):(\d+)/1", conn["host"])
        assert match, conn["host"]
        host, port = match.group(1), int(match.group(2))
    else:
        host, port = conn["host"], conn["port"]
    assert host in SERVICES
    assert INTERNAL_PORTS[host] == port


def test_grip_default_is_the_sandbox_with_its_demo_token():
    from grip.airflow.hook import GripHook
    from sandbox.cli import build_parser

    command = SERVICES["sandbox"]["command"]
    assert command[:3] == ["python", "-m", "sandbox"]
    args = build_parser().parse_args(command[3:])
    assert (args.host, args.port) == ("0.0.0.0", 8900)
    assert args.db == "/opt/airflow/var/sandbox/sandbox.sqlite"
    assert container_paths(SERVICES["sandbox"]) == {"/opt/airflow/var/sandbox": "sandbox-data"}
    assert SERVICES["sandbox"]["environment"]["PYTHONPATH"] == "/opt/airflow/plugins"

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_GRIP_DEFAULT", COMMON_ENV["AIRFLOW_CONN_GRIP_DEFAULT"])
        settings = GripHook().settings()
    assert settings.base_url == f"http://sandbox:{args.port}/1"
    assert settings.token == "sandbox-demo-token"
    assert settings.allow_http is True


def test_demo_sftp_checks_the_host_key_kept_in_the_repository():
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    private = paramiko.Ed25519Key.from_private_key_file(
        str(ROOT / "docker/sftp/ssh_host_ed25519_key")
    )
    public_line = (ROOT / "docker/sftp/ssh_host_ed25519_key.pub").read_text().split()
    assert public_line[:2] == [private.get_name(), private.get_base64()]
    assert connection("demo_sftp")["extra"]["host_key"] == " ".join(public_line[:2])

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_DEMO_SFTP", COMMON_ENV["AIRFLOW_CONN_DEMO_SFTP"])
        hook = SFTPHook(ssh_conn_id="demo_sftp")
    assert hook.no_host_key_check is False
    assert hook.host_key is not None
    assert hook.host_key.get_base64() == private.get_base64()


def test_sftp_service_serves_the_drop_as_the_connection_user_with_the_fixed_key():
    sftp = SERVICES["sftp"]
    conn = connection("demo_sftp")
    user, password = sftp["command"][0].split(":")[:2]
    assert (user, password) == (conn["login"], conn["password"])
    mounts = container_paths(sftp)
    assert mounts[f"/home/{user}/drop"] == "./var/demo/drop"
    assert mounts["/etc/sftp/demo-host-key/ssh_host_ed25519_key"] == (
        "./docker/sftp/ssh_host_ed25519_key"
    )
    installer = mounts["/etc/sftp.d/10-install-demo-host-key.sh"]
    script = ROOT / installer
    assert script.stat().st_mode & 0o111, f"{installer} must be executable"
    assert "/etc/ssh/ssh_host_ed25519_key" in script.read_text()


def test_database_connections_match_the_databases_the_stack_creates():
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from sqlalchemy.engine import make_url

    ledger = connection("grip_ledger")
    ledger_sql = (ROOT / "docker/postgres/10-grip-ledger.sql").read_text()
    assert f"CREATE ROLE {ledger['login']} LOGIN PASSWORD '{ledger['password']}'" in ledger_sql
    assert f"CREATE DATABASE {ledger['schema']} OWNER {ledger['login']}" in ledger_sql
    assert container_paths(SERVICES["postgres"])[
        "/docker-entrypoint-initdb.d/10-grip-ledger.sql"
    ] == ("./docker/postgres/10-grip-ledger.sql")

    partner = connection("demo_partner_db")
    env = SERVICES["partner-db"]["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        partner["login"],
        partner["password"],
        partner["schema"],
    )
    seed = container_paths(SERVICES["partner-db"])["/docker-entrypoint-initdb.d/10-partner.sql"]
    assert seed == "./include/demo/partner.sql"

    for conn_id in ("grip_ledger", "demo_partner_db"):
        with pytest.MonkeyPatch.context() as patch:
            variable = f"AIRFLOW_CONN_{conn_id.upper()}"
            patch.setenv(variable, COMMON_ENV[variable])
            url = make_url(PostgresHook(postgres_conn_id=conn_id).get_uri())
        conn = connection(conn_id)
        assert url.get_backend_name() == "postgresql"
        assert (url.username, url.password, url.host, url.port, url.database) == (
            conn["login"],
            conn["password"],
            conn["host"],
            conn["port"],
            conn["schema"],
        )


def test_volumes_share_logs_reports_and_work_and_mount_the_drop():
    mounts = container_paths(COMMON)
    named = set(COMPOSE["volumes"])
    assert mounts["/opt/airflow/logs"] in named
    assert mounts["/opt/airflow/var/reports"] in named
    assert mounts["/opt/airflow/var/work"] in named
    assert mounts["/opt/airflow/auth"] in named
    assert mounts["/opt/airflow/var/demo/drop"] == "./var/demo/drop"
    assert COMMON_ENV["GRIP_REPORT_DIR"] == "/opt/airflow/var/reports"
    assert COMMON_ENV["GRIP_WORK_DIR"] == "/opt/airflow/var/work"
    for name, service in SERVICES.items():
        for source in container_paths(service).values():
            assert source.startswith("./") or source in named, (name, source)


@pytest.mark.parametrize("folder", ["dags", "plugins", "include", "sandbox"])
def test_the_image_carries_the_project(folder):
    assert f"COPY --chown=airflow:root {folder}/ /opt/airflow/{folder}/" in DOCKERFILE
    assert (ROOT / folder).is_dir()


def test_the_image_extends_airflow_3_3_2_and_installs_the_pinned_requirements():
    requirements = (ROOT / "requirements.txt").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", requirements, re.MULTILINE)
    assert pinned
    assert pinned.group(1) == "3.3.2"
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", DOCKERFILE, re.MULTILINE)

    instructions = dockerfile_instructions()
    users = [i for i, (op, _) in enumerate(instructions) if op == "USER"]
    installs = [i for i, (op, arg) in enumerate(instructions) if "pip install" in arg]
    assert len(installs) == 1
    assert users
    assert users[0] < installs[0]
    assert instructions[users[0]][1] == "airflow"
    words = shlex.split(instructions[installs[0]][1])
    assert words[words.index("-r") + 1] == "/opt/airflow/requirements/requirements.txt"
    assert words[words.index("-c") + 1] == "/opt/airflow/requirements/constraints.txt"
    copied = "COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/requirements/"
    assert copied in DOCKERFILE


def test_init_migrates_creates_the_login_and_the_grip_api_pool():
    init = SERVICES["airflow-init"]
    assert init["command"] == ["bash", "/opt/airflow/docker/airflow-init.sh"]
    assert "COPY --chown=airflow:root docker/airflow-init.sh /opt/airflow/docker/" in DOCKERFILE
    script_path = ROOT / "docker/airflow-init.sh"
    subprocess.run(["bash", "-n", str(script_path)], check=True)
    script = script_path.read_text()
    assert re.search(r"^airflow db migrate$", script, re.MULTILINE)
    assert re.search(r'^airflow pools set grip_api "\$\{GRIP_API_POOL_SLOTS:-\d+\}" ', script, re.M)
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    assert COMMON_ENV["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(
        "/opt/airflow/auth/"
    )


@pytest.mark.parametrize("name", sorted(set(SERVICES) - {"airflow-init"}))
def test_every_long_running_service_has_a_healthcheck(name):
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert len(check["test"]) >= 2
    assert {"interval", "timeout", "retries"} <= set(check)


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_wait_for_databases_broker_and_init(name):
    depends = SERVICES[name]["depends_on"]
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert depends["airflow-init"] == {"condition": "service_completed_successfully"}


def test_workers_wait_for_the_api_server_and_the_demo_services():
    depends = SERVICES["airflow-worker"]["depends_on"]
    for name in ("airflow-apiserver", "sandbox", "partner-db", "sftp"):
        assert depends[name] == {"condition": "service_healthy"}
    assert SERVICES["airflow-triggerer"]["depends_on"]["airflow-apiserver"] == {
        "condition": "service_healthy"
    }
    assert SERVICES["airflow-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_every_dependency_is_a_service_that_can_meet_its_condition():
    for name, service in SERVICES.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in SERVICES, (name, target)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], (name, target)
            else:
                assert rule["condition"] == "service_completed_successfully"
                assert SERVICES[target].get("restart") == "no"


def test_the_build_context_leaves_out_the_venv_and_local_data():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", "tests"} <= set(ignored)
    for folder in ("dags", "plugins", "include", "sandbox", "docker"):
        assert folder not in ignored
