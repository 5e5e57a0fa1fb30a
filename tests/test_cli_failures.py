"""Every CLI failure is one line that says what to do, with a non-zero exit: a database that is
down or not migrated, a dev database that is not where the command runs. ``--dev`` finds the
project's data folder from any folder below it, or refuses; the outbox names the cause of a
failing drain once, not every round."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from authsvc import cli, config
from authsvc.app import build_container
from authsvc.store import migrate
from tests.conftest import MIGRATIONS

COMMANDS = [
    ["clients", "list"],
    ["clients", "create", "gateway", "--reason", "ticket 42 new gateway"],
    ["keys", "list"],
    ["outbox", "status"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["accounts", "show", "someone@example.com"],
    ["worker", "--once"],
]


@pytest.fixture
def empty_db(pg_admin_url):
    """A database with no tables: one nobody migrated."""
    name = f"authsvc_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/authsvc"


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_unmigrated_database_says_run_db_upgrade(cli_env, empty_db, args):
    line = one_line_error(CliRunner().invoke(cli.main, args, env={**cli_env, "AUTHSVC_DATABASE_URL": empty_db}))
    assert "is not migrated" in line and "does not exist" in line and "run `authsvc db upgrade`" in line


@pytest.mark.parametrize("args", COMMANDS[:-1] + [["db", "status"], ["db", "upgrade"]], ids=" ".join)
def test_a_database_that_is_down_says_so_and_what_to_do(cli_env, args):
    url = closed_port_url()
    line = one_line_error(CliRunner().invoke(cli.main, args, env={**cli_env, "AUTHSVC_DATABASE_URL": url}))
    assert f"cannot use the database at {url}" in line
    assert "Connection refused" in line and "start PostgreSQL or fix AUTHSVC_DATABASE_URL" in line


def test_a_database_url_with_a_password_is_redacted_in_the_line(cli_env):
    url = closed_port_url().replace("postgres@", "postgres:hunter2-secret@")
    line = one_line_error(CliRunner().invoke(cli.main, ["clients", "list"],
                                             env={**cli_env, "AUTHSVC_DATABASE_URL": url}))
    assert "hunter2-secret" not in line and "cannot use the database" in line


def test_db_status_of_an_unmigrated_database_lists_what_is_pending(cli_env, empty_db):
    result = CliRunner().invoke(cli.main, ["db", "status"], env={**cli_env, "AUTHSVC_DATABASE_URL": empty_db})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "applied: 0" in result.output and "pending: 0001_accounts_registrations" in result.output


# ---------------------------------------------------------------------------- --dev's data folder
def test_dev_from_a_subfolder_uses_the_projects_data_folder(db_url, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / ".authsvc-dev").mkdir(parents=True)
    deep = project / "src" / "deep"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    env = {"AUTHSVC_DATABASE_URL": db_url, "AUTHSVC_DATA_DIR": ""}
    made = CliRunner().invoke(cli.main, ["clients", "create", "gw", "--reason", "ticket 7 dev test", "--dev"], env=env)
    assert made.exit_code == 0, made.output
    assert (project / ".authsvc-dev" / "dev-secrets.json").exists()  # the project's, not a new one
    assert not (deep / ".authsvc-dev").exists()
    monkeypatch.chdir(project / "src")
    listed = CliRunner().invoke(cli.main, ["clients", "list", "--dev"], env=env)
    assert listed.exit_code == 0 and "\tgw\t" in listed.output


def test_dev_elsewhere_refuses_instead_of_making_an_empty_database(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(config, "_CHECKOUT", tmp_path / "not-a-checkout")
    for args in (["clients", "list", "--dev"], ["db", "status", "--dev"], ["keys", "list", "--dev"]):
        line = one_line_error(CliRunner().invoke(cli.main, args, env={"AUTHSVC_DATA_DIR": "", "AUTHSVC_DATABASE_URL": ""}))
        assert "no dev data folder" in line and "run `authsvc serve --dev` in the project folder first" in line
    assert list(elsewhere.iterdir()) == []  # nothing was made


def test_find_dev_data_dir_prefers_the_nearest_then_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "a" / ".authsvc-dev").mkdir(parents=True)
    (tmp_path / "a" / "b" / ".authsvc-dev").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c").mkdir()
    assert config.find_dev_data_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / ".authsvc-dev"
    assert config.find_dev_data_dir(tmp_path / "a") == tmp_path / "a" / ".authsvc-dev"
    checkout = tmp_path / "checkout"
    (checkout / "authsvc").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'authsvc'\n")
    monkeypatch.setattr(config, "_CHECKOUT", checkout)
    assert config.find_dev_data_dir(tmp_path) == checkout / ".authsvc-dev"
    monkeypatch.setattr(config, "_CHECKOUT", tmp_path / "nothing")
    assert config.find_dev_data_dir(tmp_path) == tmp_path / ".authsvc-dev"


# ---------------------------------------------------------------------------- the outbox
def test_the_outbox_names_the_cause_of_a_failing_drain_once(settings, empty_db, caplog):
    container = build_container(settings.replace(database_url=empty_db))
    caplog.set_level(logging.WARNING, logger="authsvc.services.outbox")
    thread = threading.Thread(target=container.outbox.run_forever, kwargs={"idle_seconds": 0.02}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any("drain failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the failing drain was never logged"
            time.sleep(0.02)
        time.sleep(0.5)  # ~25 more failing rounds
        failed = [r.getMessage() for r in caplog.records if "drain failed" in r.getMessage()]
        assert len(failed) == 1, failed
        assert "not migrated" in failed[0] and 'relation "outbox" does not exist' in failed[0]
        assert "authsvc db upgrade" in failed[0]
        migrate.upgrade(empty_db, MIGRATIONS)
        while not any("works again" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline + 20, "recovery was never logged"
            time.sleep(0.02)
    finally:
        container.close()
        thread.join(timeout=10)


def test_an_unmigrated_database_is_a_503_over_http_not_a_500(make_app, settings, empty_db):
    client = make_app(settings.replace(database_url=empty_db)).test_client()
    r = client.post("/v1/login", json={"email": "a@example.com", "password": "correct horse battery staple"})
    assert r.status_code == 503 and r.get_json()["code"] == "unavailable"
    assert "relation" not in r.get_data(as_text=True)  # operators' detail stays in the log


def test_quieting_an_operator_command_leaves_other_loggers_and_later_code_alone(cli_env):
    """The pool's and the circuit breaker's warnings are held back while an operator command
    runs (its one error line says it all), and only then: in-process callers (tests, anything
    embedding the CLI) and child loggers such as the throttle counters keep their warnings."""
    url = closed_port_url()
    one_line_error(CliRunner().invoke(cli.main, ["clients", "list"], env={**cli_env, "AUTHSVC_DATABASE_URL": url}))
    for name in ("authsvc.store", "psycopg.pool", "authsvc.store.counters"):
        logger = logging.getLogger(name)
        assert logger.filters == [] and logger.isEnabledFor(logging.WARNING), name
