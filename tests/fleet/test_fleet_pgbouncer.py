"""The fleet through PgBouncer in transaction pooling mode (README, "A fleet of
replicas", "PgBouncer"): three replicas on AUTHSVC_DATABASE_URL -> PgBouncer
(4 server connections shared by 6 workers, the CLI and the probes) with
AUTHSVC_DATABASE_POOLER=pgbouncer, LISTEN on AUTHSVC_DATABASE_DIRECT_URL. The HTTP flows pass:
registration, sign-in, step-up and its redemption, and a client revoked through the CLI stops
on a replica that had it cached."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from authsvc import errors
from authsvc.store import Store
from tests.fleet.conftest import clone_database, start_fleet, stop_fleet
from tests.fleet.flows import (
    client_revoked_everywhere,
    introspect,
    kid_of,
    new_account,
    new_backend,
    redeem,
    sign_in,
    step_up,
)
from tests.support import pgbouncer

pytestmark = pytest.mark.skipif(
    pgbouncer.binary() is None,
    reason="pgbouncer is not installed (Debian's pgbouncer package; .ci/run installs it as root)")


@pytest.fixture(scope="module")
def bouncer(pg_admin_url):
    info = conninfo_to_dict(pg_admin_url)
    b = pgbouncer.PgBouncer(info.get("host") or "127.0.0.1", int(info.get("port") or 5432),
                            user=info.get("user") or "postgres").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def bouncer_db(pg_admin_url, template_db):
    yield from clone_database(pg_admin_url, template_db)  # its own: another fleet, another key


@pytest.fixture(scope="module")
def pooled_url(bouncer, bouncer_db):
    return bouncer.url(conninfo_to_dict(bouncer_db)["dbname"])


@pytest.fixture(scope="module")
def fleet(pooled_url, bouncer_db, twilio_server, smtp_server):
    made = start_fleet(pooled_url, twilio_server, smtp_server, AUTHSVC_DATABASE_POOLER="pgbouncer",
                       AUTHSVC_DATABASE_DIRECT_URL=bouncer_db)
    yield made
    stop_fleet(made)


def test_http_flows_through_pgbouncer(fleet, twilio, smtp):
    c = fleet.clients()
    account = new_account(c[0], twilio, smtp)
    tokens = sign_in(c[1], account)
    client_id, backend = new_backend(fleet)
    for i in range(12):  # the same statements many times over shared server connections
        r = introspect(c[i % 3], backend, tokens["access_token"])
        assert r.status_code == 200 and r.get_json()["active"] is True, r
        tokens = c[(i + 1) % 3].post("/v1/token/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()
    done = step_up(c[2], tokens["access_token"], account)
    assert redeem(c[0], backend, done["step_up_token"]).status_code == 200
    assert redeem(c[1], backend, done["step_up_token"]).status_code == 409  # once, whichever replica
    assert kid_of(tokens["access_token"])


def test_a_client_revoked_through_the_cli_stops_on_a_replica_that_cached_it(fleet, twilio, smtp):
    client_revoked_everywhere(fleet, twilio, smtp)


def test_without_the_pooler_setting_prepared_statements_break(pooled_url):
    """Why AUTHSVC_DATABASE_POOLER=pgbouncer: psycopg prepares a statement after 5 runs, and
    through a transaction pooler the next transaction lands on a server connection where it is
    missing (or another client's is there under the same name)."""

    def hammer(pooled: bool) -> int:
        stores = [Store(pooled_url, pooled=pooled, max_size=2) for _ in range(3)]
        failures = 0
        try:
            for _ in range(15):
                for s in stores:
                    try:
                        with s.transaction() as tx:
                            tx.keys.clock()
                            tx.keys.published()
                    except (errors.StoreError, psycopg.Error):
                        failures += 1
        finally:
            for s in stores:
                s.close()
        return failures

    assert hammer(pooled=True) == 0
    assert hammer(pooled=False) > 0
