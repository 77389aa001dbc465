"""Each harness fixture really talks to its service."""

from __future__ import annotations

import sqlite3

import paramiko
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration


def test_airflow_home_has_a_migrated_metadata_database(airflow_home):
    db = airflow_home / "airflow.db"
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"dag", "dag_run", "task_instance", "alembic_version"} <= tables


@pytest.mark.parametrize("fixture", ["pg_url", "mariadb_url"])
def test_scratch_database_is_fresh_and_writable(request, fixture):
    url = request.getfixturevalue(fixture)
    engine = sa.create_engine(url)
    # created for this session (other tests of the session may have added tables since)
    assert engine.url.database.startswith("grip_test_")
    try:
        with engine.begin() as conn:
            assert "probe" not in sa.inspect(conn).get_table_names()
            conn.exec_driver_sql("CREATE TABLE probe (name VARCHAR(20))")
            conn.exec_driver_sql("INSERT INTO probe VALUES ('Бруно')")
            assert conn.exec_driver_sql("SELECT name FROM probe").scalar() == "Бруно"
            conn.exec_driver_sql("DROP TABLE probe")
    finally:
        engine.dispose()


def _client(sshd, **auth) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        sshd.host,
        port=sshd.port,
        username=sshd.username,
        look_for_keys=False,
        allow_agent=False,
        **auth,
    )
    return client


def test_sshd_accepts_password_and_key_and_serves_sftp(sshd):
    (sshd.upload_dir / "hello.csv").write_text("a,b\n1,2\n")
    for auth in ({"password": sshd.password}, {"key_filename": str(sshd.private_key_path)}):
        client = _client(sshd, **auth)
        try:
            sftp = client.open_sftp()
            assert "hello.csv" in sftp.listdir(str(sshd.upload_dir))
            with sftp.open(str(sshd.upload_dir / "hello.csv")) as remote:
                assert remote.read() == b"a,b\n1,2\n"
        finally:
            client.close()


def test_sshd_refuses_a_wrong_password(sshd):
    with pytest.raises(paramiko.AuthenticationException):
        _client(sshd, password="not-the-password")
