"""deploy/ examples parse and agree with the image: commands the CLI has, the port the
service binds, AUTHSVC_* variables config.py reads, hardened containers, shutdown timing."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from authsvc import cli, config, config_table

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = DEPLOY / "compose" / "compose.yaml"
KNOWN_VARIABLES = {config.PREFIX + var.name for var in config_table.VARS}


def _k8s_docs() -> list[dict]:
    docs = []
    for path in K8S:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _known_variable(name: str) -> bool:
    """config.py reads ``name``: it is a row of the settings table (authsvc/config_table.py)."""
    return name in KNOWN_VARIABLES


def _is_command(args: list[str]) -> bool:
    command: click.Command = cli.main
    for word in args:
        if word.startswith("-"):
            break
        if not isinstance(command, click.Group):
            break
        if word not in command.commands:
            return False
        command = command.commands[word]
    return not isinstance(command, click.Group)


def _pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for d in docs:
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return specs


def _authsvc_containers(spec: dict) -> list[dict]:
    return [c for c in spec.get("containers", []) + spec.get("initContainers", []) if "authsvc" in c["image"]]


def _bind_port(bind: str) -> int:
    return int(bind.rpartition(":")[2])


def test_examples_exist_and_parse():
    assert K8S and COMPOSE.exists()
    kinds = {d["kind"] for d in _k8s_docs()}
    assert {"Deployment", "Job", "Secret", "ConfigMap", "Service"} <= kinds
    assert yaml.safe_load(COMPOSE.read_text())["services"]


def test_kubernetes_runs_authsvc_commands_that_exist():
    commands = []
    for where, spec in _pod_specs(_k8s_docs()):
        for c in _authsvc_containers(spec):
            args = c.get("args") or c.get("command") or []
            assert _is_command(args), f"{where}: {args} is not an authsvc command"
            commands.append(args[0])
    assert {"serve", "db", "worker"} <= set(commands)


def test_every_authsvc_variable_set_is_one_config_reads():
    docs = _k8s_docs()
    names = set()
    for d in docs:
        if d["kind"] == "ConfigMap":
            names |= set(d["data"])
        if d["kind"] == "Secret":
            names |= set(d.get("stringData", {})) | set(d.get("data", {}))
    for _, spec in _pod_specs(docs):
        for c in spec["containers"] + spec.get("initContainers", []):
            names |= {e["name"] for e in c.get("env", []) if e["name"].startswith(config.PREFIX)}
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        names |= {k for k in (service.get("environment") or {}) if k.startswith(config.PREFIX)}
    example = (DEPLOY / "compose" / "authsvc.env.example").read_text()
    names |= set(re.findall(r"^#?\s*(AUTHSVC_[A-Z0-9_]+)=", example, re.M))
    names = {n for n in names if n.startswith(config.PREFIX)}
    assert len(names) > 10
    unknown = sorted(n for n in names if not _known_variable(n))
    assert not unknown, f"config.py does not read {unknown}"
    assert not _known_variable("AUTHSVC_NO_SUCH_SETTING")


def test_secrets_come_from_the_secret():
    docs = _k8s_docs()
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    secret = secrets["authsvc-secrets"]
    keys = set(secret["stringData"])
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    for secret_name in ("AUTHSVC_ENCRYPTION_KEY", "AUTHSVC_TWILIO_AUTH_TOKEN", "AUTHSVC_DATABASE_URL",
                        "AUTHSVC_WEBHOOK_SECRET"):
        assert secret_name in keys and secret_name not in configmap["data"]
    for where, spec in _pod_specs(docs):
        for c in _authsvc_containers(spec):
            refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e]
            for ref in refs:
                assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["stringData"], where
            from_secret = [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
            assert refs or from_secret == [secret["metadata"]["name"]], where


def _user(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]


def test_migrations_and_the_service_use_two_database_roles():
    """The owner of the schema migrates; the service runs as a role that owns nothing (an owner
    could disable the audit log's append-only triggers). Nothing that serves can read the
    owner's URL."""
    docs = _k8s_docs()
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    migrate_users, serve_users = set(), set()
    for where, spec in _pod_specs(docs):
        for c in _authsvc_containers(spec):
            env = {e["name"]: e for e in c.get("env", [])}
            if "AUTHSVC_DATABASE_URL" in env:
                ref = env["AUTHSVC_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
                user = _user(secrets[ref["name"]][ref["key"]])
            else:
                user = next(_user(secrets[s["secretRef"]["name"]]["AUTHSVC_DATABASE_URL"])
                            for s in c.get("envFrom", []) if "secretRef" in s)
            (migrate_users if c.get("args") == ["db", "upgrade"] else serve_users).add(user)
            if c.get("args") != ["db", "upgrade"]:
                mounted = {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
                mounted |= {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
                assert "authsvc-migrate" not in mounted, where
    assert migrate_users == {"authsvc_owner"} and serve_users == {"authsvc_app"}

    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    assert _user(compose["migrate"]["environment"]["AUTHSVC_DATABASE_URL"]) == "authsvc_owner"
    for name in ("authsvc", "worker"):
        env = compose[name].get("environment") or {}
        url = env.get("AUTHSVC_DATABASE_URL") or yaml.safe_load(COMPOSE.read_text())["x-authsvc"]["environment"][
            "AUTHSVC_DATABASE_URL"]
        assert _user(url) == "authsvc_app", name
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in compose["postgres"]["volumes"]


@pytest.fixture
def two_roles(pg_admin_url):
    """deploy/compose/initdb/10-roles.sql, as the postgres image runs it, on a database and
    role names of this test's own (roles are cluster-wide; parallel runs must not collide)."""
    import uuid

    import psycopg
    from psycopg.conninfo import make_conninfo

    tag = uuid.uuid4().hex[:10]
    db, owner, app = f"authsvc_roles_{tag}", f"authsvc_owner_{tag}", f"authsvc_app_{tag}"
    sql = (DEPLOY / "compose" / "initdb" / "10-roles.sql").read_text()
    sql = sql.replace("authsvc_owner", owner).replace("authsvc_app", app).replace("DATABASE authsvc", f"DATABASE {db}")
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    with psycopg.connect(make_conninfo(pg_admin_url, dbname=db), autocommit=True) as conn:
        conn.execute(sql)
    urls = {"owner": make_conninfo(pg_admin_url, dbname=db, user=owner, password="owner-local-only"),
            "app": make_conninfo(pg_admin_url, dbname=db, user=app, password="app-local-only")}
    yield urls
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{app}"')
        conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def test_the_service_runs_as_a_role_that_owns_nothing(two_roles, settings, make_app, twilio, smtp):
    """Migrations as the owner, then a registration, a login and an audited operator change as
    the service's role, with only the grants of initdb/10-roles.sql; that role cannot drop the
    audit log's protection nor rewrite it."""
    import psycopg

    from authsvc.store import migrate
    from tests.conftest import MIGRATIONS
    from tests.support.flows import enroll_totp, login_password, register

    migrate.upgrade(two_roles["owner"], MIGRATIONS)
    app = make_app(settings.replace(database_url=two_roles["app"]))
    client = app.test_client()
    account = register(client, twilio, smtp)
    enroll_totp(client, account["enrollment_token"])
    assert login_password(client, account).status_code == 200
    container = app.extensions["authsvc"]
    container.clients.create("gateway", operator="test", reason="ticket 9 roles test")
    assert client.get("/readyz").status_code == 200
    with psycopg.connect(two_roles["app"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        with pytest.raises(psycopg.Error):
            conn.execute("DELETE FROM audit_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE sneaky (id int)")


def test_authsvc_containers_are_hardened():
    for where, spec in _pod_specs(_k8s_docs()):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in _authsvc_containers(spec):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be a writable emptyDir"
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where


def test_serving_sidecar_ports_probes_and_shutdown_agree_with_the_image():
    docs = _k8s_docs()
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    port = _bind_port(configmap["AUTHSVC_BIND"])
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text()
    served_paths = {p for p in yaml.safe_load((ROOT / "openapi.yaml").read_text())["paths"]}
    servers = [(where, spec, c) for where, spec in _pod_specs(docs) for c in _authsvc_containers(spec)
               if c["args"][0] == "serve"]
    assert servers
    for where, spec, c in servers:
        named = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert port in named.values(), where
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = c[probe]["httpGet"]
            assert named.get(get["port"], get["port"]) == port, (where, probe)
            assert get["path"] in served_paths, (where, probe)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        workers = int(configmap.get("AUTHSVC_WORKERS", "2"))
        assert workers == 1 or "AUTHSVC_REDIS_URL" in configmap, "several workers need Redis"
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
        assert pre_stop[0] == "sleep"
        graceful = int(configmap.get("AUTHSVC_GRACEFUL_TIMEOUT", config.Settings().graceful_timeout))
        drain = int(configmap.get("AUTHSVC_DRAIN_SECONDS", config.Settings().drain_seconds))
        # readiness fails (503 from SIGTERM on) before the drain ends and the listener closes
        ready = c["readinessProbe"]
        assert ready["periodSeconds"] * ready["failureThreshold"] <= int(pre_stop[1]) + drain, where
        # preStop, the drain, gunicorn's graceful timeout, then 10 s for the outbox sender and exit
        assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain + graceful + 10, where
    service_ports = {p["targetPort"] for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert "auth" in service_ports


def test_metrics_listener_is_scraped_and_not_published():
    docs = _k8s_docs()
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    metrics_port = _bind_port(configmap["AUTHSVC_METRICS_BIND"])
    assert metrics_port != _bind_port(configmap["AUTHSVC_BIND"])
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        servers = [c for c in _authsvc_containers(spec) if c["args"][0] == "serve"]
        if not servers:
            continue
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == metrics_port
        for c in servers:
            assert metrics_port in {p["containerPort"] for p in c["ports"]}
    published = {p["targetPort"] for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]}
    assert "metrics" not in published and metrics_port not in published
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["authsvc"]
    compose_port = _bind_port(compose["environment"]["AUTHSVC_METRICS_BIND"])
    assert f"127.0.0.1:{compose_port}:{compose_port}" in compose["ports"]


def test_only_the_scraper_may_reach_the_metrics_listener():
    """The listener binds 0.0.0.0 inside the pod: a NetworkPolicy must select every pod that
    serves it and let only a named scraper reach its port."""
    docs = _k8s_docs()
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for d in (d for d in docs if d["kind"] == "Deployment"):
        spec = d["spec"]["template"]["spec"]
        if not any(c["args"][0] == "serve" for c in _authsvc_containers(spec)):
            continue
        labels = d["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if "Ingress" in p["spec"]["policyTypes"]
                and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert mine, f"no ingress NetworkPolicy selects {d['metadata']['name']}"
        for policy in mine:
            for rule in policy["spec"]["ingress"]:
                ports = {p["port"] for p in rule.get("ports", [])}
                if "metrics" in ports or 9100 in ports or not ports:
                    assert rule.get("from"), f"{policy['metadata']['name']}: the metrics port is open to anyone"
                    for peer in rule["from"]:
                        assert "ipBlock" not in peer and peer.get("podSelector", {}).get("matchLabels"), peer


def test_migrations_run_before_serving():
    docs = _k8s_docs()
    jobs = [d for d in docs if d["kind"] == "Job"]
    inits = [c for _, spec in _pod_specs(docs) for c in spec.get("initContainers", []) if "authsvc" in c["image"]]
    assert any(c["args"] == ["db", "upgrade"] for j in jobs for c in j["spec"]["template"]["spec"]["containers"]) or \
        any(c["args"] == ["db", "upgrade"] for c in inits)


def test_compose_stack_is_complete_and_consistent():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "authsvc", "worker", "migrate"} <= set(services)
    assert any("mail" in name or "smtp" in name for name in services), "an SMTP catcher"
    for name, service in services.items():
        if "authsvc" not in str(service.get("image", "")):
            continue
        assert _is_command(service["command"]), (name, service["command"])
        assert service["read_only"] is True and any(t.startswith("/tmp") for t in service["tmpfs"]), name
    serve = services["authsvc"]
    assert serve["command"] == ["serve"]
    port = _bind_port(serve["environment"]["AUTHSVC_BIND"])
    assert any(p.endswith(f":{port}") for p in serve["ports"])
    assert int(serve["environment"]["AUTHSVC_WORKERS"]) == 1 or serve["environment"].get("AUTHSVC_REDIS_URL")
    smtp = serve["environment"]["AUTHSVC_SMTP_URL"]
    assert smtp.split("://")[1].split(":")[0] in services
    assert services["authsvc"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    graceful = int(serve["environment"].get("AUTHSVC_GRACEFUL_TIMEOUT", config.Settings().graceful_timeout))
    drain = int(serve["environment"].get("AUTHSVC_DRAIN_SECONDS", config.Settings().drain_seconds))
    assert int(serve["stop_grace_period"].split()[0].rstrip("s")) >= drain + graceful + 10


@pytest.mark.parametrize("args, ok", [(["serve"], True), (["db", "upgrade"], True), (["db"], False),
                                      (["nope"], False), (["keys", "list"], True)])
def test_is_command_helper(args, ok):
    assert _is_command(args) is ok


def test_dockerfile_pins_its_base_by_digest_and_installs_no_dev_extras():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[\w.-]*@sha256:[0-9a-f]{64}$", dockerfile, re.M)
    assert "FROM ${PYTHON_IMAGE} AS builder" in dockerfile and "FROM ${PYTHON_IMAGE} AS runtime" in dockerfile
    install = re.search(r"pip install [^\n]*authsvc-\*\.whl[^\n]*", dockerfile).group()
    assert "[" not in install, "the image installs no extras (pgserver, test tools)"
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "pgserver" not in runtime and "pgserver" in pyproject.split("[project.optional-dependencies]")[1]
