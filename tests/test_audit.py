"""The audit log resists the service's own database role: rows cannot be changed or removed
(PostgreSQL triggers), and whoever gets past that (the tables' owner) without the encryption
key cannot recompute the keyed chain, rewrite it as "legacy", forge a checkpoint, or cut rows
off the end unnoticed."""

from __future__ import annotations

import hashlib
import json
import re
import time

import psycopg
import pytest
from click.testing import CliRunner

from authsvc import cli
from authsvc.security.crypto import Cipher
from authsvc.services.platform.audit import GENESIS, audit, row_body
from tests.support.concurrency import race
from tests.test_webhooks import SECRET, receiver  # noqa: F401 - fixture


@pytest.fixture
def run(cli_env):
    def _run(*args: str):
        return CliRunner().invoke(cli.main, list(args), env={**cli_env, "AUTHSVC_OPERATOR": "alice"},
                                  catch_exceptions=False)

    return _run


def make_rows(run, n: int) -> None:
    for i in range(n):
        assert run("clients", "create", f"c{i}", "--reason", f"ticket CHG-{i}").exit_code == 0


class Owner:
    """What the tables' owner (or a superuser) could do: lift the triggers for a moment."""

    def __init__(self, db) -> None:
        self.db = db

    def __call__(self, sql: str, params=()):
        with self.db.transaction():
            for table in ("audit_log", "audit_checkpoints", "audit_chain_keys", "audit_seals", "audit_sealing"):
                self.db.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            result = self.db.execute(sql, params)
            row = result.fetchone() if result.description else None
            for table in ("audit_log", "audit_checkpoints", "audit_chain_keys", "audit_seals", "audit_sealing"):
                self.db.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        return row

    def rechain_as_legacy(self) -> None:
        """Recompute every row's hash with the old, unkeyed SHA-256 chain (all an attacker
        without the encryption key can compute) and mark the rows as legacy."""
        rows = self.db.execute("SELECT id, at, actor, action, account_id, detail FROM audit_log ORDER BY id").fetchall()
        prev = GENESIS
        for id_, at, actor, action, account_id, detail in rows:
            digest = hashlib.sha256(prev + row_body(at, actor, action, account_id, detail)).digest()
            self("UPDATE audit_log SET prev_hash = %s, hash = %s, chain = 1 WHERE id = %s", (prev, digest, id_))
            prev = digest


def test_the_database_refuses_to_change_or_remove_audit_rows(run, db):
    make_rows(run, 2)
    assert run("audit", "checkpoint").exit_code == 0
    for sql in (
        "UPDATE audit_log SET detail = '{}'::jsonb",
        "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
        "TRUNCATE audit_log",
        "UPDATE audit_checkpoints SET last_id = 1",
        "DELETE FROM audit_checkpoints",
        "TRUNCATE audit_checkpoints",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(sql)
    assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 2
    assert run("audit", "verify").exit_code == 0


def test_an_edited_row_with_a_recomputed_chain_is_detected(run, db):
    make_rows(run, 3)
    owner = Owner(db)
    owner("UPDATE audit_log SET detail = jsonb_set(detail, '{reason}', '\"nothing to see\"') "
          "WHERE id = (SELECT min(id) FROM audit_log)")
    owner.rechain_as_legacy()  # the attack that fooled the old verify
    result = run("audit", "verify")
    assert result.exit_code == 1 and "BROKEN" in result.output, result.output


def test_rows_cut_off_the_end_are_detected_through_checkpoints(run, db):
    make_rows(run, 3)
    out = run("audit", "checkpoint")
    assert out.exit_code == 0
    published = re.search(r"^checkpoint #\d+: (\d+:[0-9a-f]{64})$", out.output, re.M).group(1)  # LAST_ID:HEAD
    assert run("audit", "verify").exit_code == 0
    assert "nothing new since the last checkpoint" in run("audit", "checkpoint").output

    owner = Owner(db)
    owner("DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)")
    result = run("audit", "verify")
    assert result.exit_code == 1 and "was removed" in result.output, result.output
    owner("DELETE FROM audit_seals WHERE seq = (SELECT max(seq) FROM audit_seals)")  # and its seal
    result = run("audit", "verify")
    assert result.exit_code == 1 and "cut off the end" in result.output, result.output

    # the owner removes the stored checkpoints too: the published one still finds it
    owner("DELETE FROM audit_checkpoints")
    assert run("audit", "verify").exit_code == 0  # nothing left in the database to compare with
    result = run("audit", "verify", "--checkpoint", published)
    assert result.exit_code == 1 and "cut off the end" in result.output, result.output


def test_a_forged_checkpoint_is_detected(run, db):
    make_rows(run, 2)
    head = bytes(db.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0])
    Owner(db)("INSERT INTO audit_checkpoints (at, last_id, head, mac) "
              "SELECT now(), max(id) + 5, %s, %s FROM audit_log", (head, b"\x00" * 32))
    result = run("audit", "verify")
    assert result.exit_code == 1 and "not authentic" in result.output


def test_an_unkeyed_row_from_the_database_role_is_refused(run, db):
    make_rows(run, 2)
    last = db.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0]
    body = json.dumps({"reason": "routine"})
    # the attacker can only compute the unkeyed digest: the database refuses such a row
    for sql in ("INSERT INTO audit_log (actor, action, detail, prev_hash, hash) VALUES "
                "('operator:alice', 'client.created', %s::jsonb, %s, %s)",
                "INSERT INTO audit_log (actor, action, detail, prev_hash, hash, chain) VALUES "
                "('operator:alice', 'client.created', %s::jsonb, %s, %s, 1)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="keyed rows only"):
            db.execute(sql, (body, last, hashlib.sha256(last).digest()))
    # nor can the key be removed to reopen that path
    for sql in ("DELETE FROM audit_chain_keys", "TRUNCATE audit_chain_keys"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.execute(sql)
    # a keyed-looking row without the key is stored, and found by verify
    db.execute("INSERT INTO audit_log (actor, action, detail, prev_hash, hash, chain) VALUES "
               "('operator:alice', 'client.created', %s::jsonb, %s, %s, 2)", (body, last, b"\x01" * 32))
    result = run("audit", "verify")
    assert result.exit_code == 1 and "BROKEN" in result.output


def _forge_legacy_row(db, actor="operator:alice", action="client.created") -> int:
    """What the owner (past the triggers) or an old database could hold: an unkeyed row
    correctly chained onto the head with plain SHA-256."""
    last = bytes(db.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()[0])
    row = Owner(db)("INSERT INTO audit_log (actor, action, detail, prev_hash, chain) VALUES "
                    "(%s, %s, '{\"reason\": \"routine\"}'::jsonb, %s, 1) "
                    "RETURNING id, at, actor, action, account_id, detail", (actor, action, last))
    Owner(db)("UPDATE audit_log SET hash = %s WHERE id = %s",
              (hashlib.sha256(last + row_body(*row[1:])).digest(), row[0]))
    return row[0]


def test_an_unkeyed_row_after_the_chain_key_stays_a_forgery_after_later_keyed_rows(app, client, db):
    """The attack: a forged operator entry, then one anonymous reset request writes a keyed row
    after it. The old verify then called the log intact."""
    container = app.extensions["authsvc"]
    container.clients.create("a", operator="alice", reason="first keyed row")
    forged = _forge_legacy_row(db)
    assert not container.audit_log.verify().intact
    container.clients.create("b", operator="alice", reason="a later keyed row")
    client.post("/v1/password-resets", json={"email": "nobody@example.com"})
    result = container.audit_log.verify()
    assert not result.intact and result.broken_at == forged and "forgery" in result.problem, result


def test_a_future_checkpoint_is_refused_and_never_silences_later_ones(app, db):
    container = app.extensions["authsvc"]
    container.clients.create("a", operator="alice", reason="first keyed row")
    last_id, head = db.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    insert = "INSERT INTO audit_checkpoints (at, last_id, head, mac) VALUES (%s::timestamptz, %s, %s, %s)"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="future"):
        db.execute(insert, ("2099-01-01T00:00:00Z", last_id, head, b"\x00" * 32))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="names no row"):
        db.execute(insert, ("2020-01-01T00:00:00Z", last_id + 5, head, b"\x00" * 32))
    # one that got in anyway (the owner, or from before migration 0060)
    Owner(db)(insert, ("2099-01-01T00:00:00Z", last_id, head, b"\x00" * 32))
    container.clients.create("b", operator="alice", reason="a later keyed row")
    cp = container.audit_log.checkpoint(min_age=300)
    assert cp is not None and cp.last_id > last_id
    assert "not authentic" in container.audit_log.verify().problem


def test_the_chain_key_is_not_in_the_database_in_clear(app, run, db, settings):
    make_rows(run, 1)
    sealed = db.execute("SELECT key_enc FROM audit_chain_keys").fetchone()[0]
    material = json.loads(Cipher(settings.encryption_keys).decrypt(sealed, aad=b"audit-chain-key:1"))
    assert material["key"] not in json.dumps([list(r) for r in db.execute("SELECT * FROM audit_log").fetchall()],
                                             default=str)
    assert bytes.fromhex(material["key"]).hex() not in sealed


def test_rows_from_before_the_keyed_chain_stay_verifiable_and_anchored(settings, make_app, db, cli_env):
    """A database upgraded from the unkeyed chain: its rows verify as legacy; the first keyed row
    anchors them, so editing one and recomputing the old chain is found."""
    Owner(db)("DELETE FROM audit_chain_keys")
    prev = GENESIS
    for i in range(3):
        row = db.execute("INSERT INTO audit_log (actor, action, detail, chain) VALUES ('system', 'old.event', "
                         "%s::jsonb, 1) RETURNING id, at, actor, action, account_id, detail",
                         (json.dumps({"n": i}),)).fetchone()
        digest = hashlib.sha256(prev + row_body(*row[1:])).digest()
        Owner(db)("UPDATE audit_log SET prev_hash = %s, hash = %s WHERE id = %s", (prev, digest, row[0]))
        prev = digest
    app = make_app(settings)  # makes the chain key: the 3 rows are the legacy part
    container = app.extensions["authsvc"]
    container.clients.create("after-upgrade", operator="alice", reason="first keyed row")
    result = container.audit_log.verify()
    assert result.intact and result.checked == 4 and result.legacy == 3, result
    owner = Owner(db)
    owner("UPDATE audit_log SET detail = '{\"n\": 99}'::jsonb WHERE id = (SELECT min(id) FROM audit_log)")
    rows = db.execute("SELECT id, at, actor, action, account_id, detail FROM audit_log WHERE chain = 1 ORDER BY id").fetchall()
    prev = GENESIS
    for r in rows:
        digest = hashlib.sha256(prev + row_body(*r[1:])).digest()
        owner("UPDATE audit_log SET prev_hash = %s, hash = %s WHERE id = %s", (prev, digest, r[0]))
        prev = digest
    assert not container.audit_log.verify().intact


def test_checkpoints_go_to_the_webhook_and_the_log(make_app, settings, caplog, receiver):  # noqa: F811
    app = make_app(settings.replace(webhook_url=receiver.url, webhook_secret=SECRET))
    container = app.extensions["authsvc"]
    container.clients.create("x", operator="alice", reason="CHG-1 backend")
    with caplog.at_level("INFO", logger="authsvc.services.audit"):
        cp = container.audit_log.checkpoint()
    assert cp is not None
    data = receiver.wait_for("audit.checkpoint")[0]["data"]
    assert data["last_id"] == cp.last_id and data["head"] == cp.head.hex() and data["mac"] == cp.mac.hex()
    assert any(cp.head.hex() in r.getMessage() for r in caplog.records)
    assert container.audit_log.checkpoint() is None  # nothing new


def test_a_removed_or_replaced_chain_key_is_reported(run, db):
    make_rows(run, 2)
    sealed = db.execute("SELECT key_enc FROM audit_chain_keys").fetchone()[0]
    db.execute("UPDATE audit_chain_keys SET key_enc = 'v1.t1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'")
    result = run("audit", "verify")
    assert result.exit_code == 1 and "chain key cannot be read" in result.output
    db.execute("UPDATE audit_chain_keys SET key_enc = %s", (sealed,))
    assert run("audit", "verify").exit_code == 0
    # removed (by the owner: the service role cannot): the next start makes a new key, under
    # which the old rows do not verify
    Owner(db)("DELETE FROM audit_chain_keys")
    result = run("audit", "verify")
    assert result.exit_code == 1 and "BROKEN at row" in result.output


# --------------------------------------------------------------------------- the sealed chain (issue 17)
def _seals(db) -> list[tuple[int, int]]:
    return db.execute("SELECT seq, row_id FROM audit_seals ORDER BY seq").fetchall()


def test_an_audited_write_takes_no_lock_and_is_sealed_after_commit(app, db):
    container = app.extensions["authsvc"]
    with container.store.transaction() as tx:
        audit(tx, "system", "test.event", None, n=1)
        pid = tx._conn.info.backend_pid  # this request's own locks (the sealer's lease is another's)
        assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                          (pid,)).fetchone()[0] == 0
    row_id = db.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    deadline = time.monotonic() + 5  # the replica's sealer thread links it within a round or two
    while not _seals(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r for _, r in _seals(db)] == [row_id]
    assert db.execute("SELECT count(*) FROM audit_unsealed").fetchone()[0] == 0
    assert container.audit_log.verify(seal_first=False).intact


def test_a_row_committed_but_not_sealed_before_a_crash_is_sealed_later(make_app, settings, db):
    """The writer's process dies between its commit and the seal: the row waits in the queue,
    verify reports it (a note while young, a failure past the bound), and any replica's sealer
    links it on its next round."""
    crashed = make_app(settings, start_outbox=False).extensions["authsvc"]  # no sealer thread
    crashed.clients.create("a", operator="alice", reason="written just before the crash")
    crashed.clients.create("b", operator="alice", reason="written just before the crash")
    assert _seals(db) == [] and db.execute("SELECT count(*) FROM audit_unsealed").fetchone()[0] == 2
    young = crashed.audit_log.verify(seal_first=False)
    assert young.intact and young.unsealed == 2 and "not sealed yet" in young.notes[-1], young
    stale = crashed.audit_log.verify(seal_first=False, unsealed_bound=0)
    assert not stale.intact and "not sealed" in stale.problem, stale
    survivor = make_app(settings).extensions["authsvc"]  # another replica, its sealer running
    deadline = time.monotonic() + 5
    while len(_seals(db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [seq for seq, _ in _seals(db)] == [1, 2]
    result = survivor.audit_log.verify(seal_first=False, unsealed_bound=0)
    assert result.intact and result.sealed == 2 and result.unsealed == 0, result


def test_concurrent_writes_on_three_replicas_verify(make_app, settings, db):
    replicas = [make_app(settings).extensions["authsvc"] for _ in range(3)]
    calls = [lambda c=replicas[i % 3], i=i: c.clients.create(f"c{i}", operator="alice", reason=f"ticket {i} x")
             for i in range(30)]
    race(calls)
    deadline = time.monotonic() + 10
    while len(_seals(db)) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [seq for seq, _ in _seals(db)] == list(range(1, 31))  # one chain, no gap, no row twice
    result = replicas[0].audit_log.verify(seal_first=False, unsealed_bound=0)
    assert result.intact and result.sealed == 30, result


def test_tampering_with_sealed_rows_and_seals_is_detected(app, db):
    container = app.extensions["authsvc"]
    for i in range(3):
        container.clients.create(f"c{i}", operator="alice", reason=f"ticket {i} x")
    container.audit_log.seal_all()
    assert container.audit_log.verify().intact
    first, second = [r for _, r in _seals(db)][:2]
    owner = Owner(db)
    detail = db.execute("SELECT detail::text FROM audit_log WHERE id = %s", (first,)).fetchone()[0]
    owner("UPDATE audit_log SET detail = jsonb_set(detail, '{reason}', '\"nothing\"') WHERE id = %s", (first,))
    result = container.audit_log.verify()
    assert not result.intact and result.broken_at == first and "changed" in result.problem, result
    owner("UPDATE audit_log SET detail = %s::jsonb WHERE id = %s", (detail, first))
    assert container.audit_log.verify().intact

    seal = db.execute("SELECT seq, row_id, hash, sealed_at FROM audit_seals WHERE row_id = %s", (second,)).fetchone()
    owner("DELETE FROM audit_seals WHERE row_id = %s", (second,))  # a seal removed from the middle
    result = container.audit_log.verify()
    assert not result.intact and "seal 2 is missing" in result.problem, result
    owner("INSERT INTO audit_seals (seq, row_id, hash, sealed_at) VALUES (%s, %s, %s, %s)", seal)
    assert container.audit_log.verify().intact

    owner("DELETE FROM audit_log WHERE id = %s", (second,))  # a sealed row removed
    result = container.audit_log.verify()
    assert not result.intact and result.broken_at == second and "removed" in result.problem, result


def test_rows_forged_or_copied_by_the_database_role(app, db):
    container = app.extensions["authsvc"]
    container.clients.create("a", operator="alice", reason="a real entry")
    container.audit_log.seal_all()
    # a copy of a real row: refused (its MAC is unique)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO audit_log (at, actor, action, account_id, detail, nonce, hash, chain) "
                   "SELECT at, actor, action, account_id, detail, nonce, hash, chain FROM audit_log "
                   "WHERE chain = 3 LIMIT 1")
    # an unlinked row without the key: accepted by the database, sealed, and found by verify
    forged = db.execute("INSERT INTO audit_log (actor, action, detail, nonce, hash, chain) VALUES "
                        "('operator:alice', 'client.created', '{\"reason\": \"routine\"}'::jsonb, %s, %s, 3) "
                        "RETURNING id", (b"\x00" * 16, b"\x01" * 32)).fetchone()[0]
    result = container.audit_log.verify(seal_first=False)
    assert not result.intact and result.broken_at == forged, result  # before its seal
    container.audit_log.seal_all()
    result = container.audit_log.verify()
    assert not result.intact and result.broken_at == forged and "without the chain key" in result.problem


def test_a_row_of_the_previous_version_during_a_rolling_upgrade_is_sealed(app, db):
    """The previous version still links its keyed rows itself (chain 2, under its lock): they
    are sealed like the others and verified against the link they stored."""
    container = app.extensions["authsvc"]
    container.clients.create("a", operator="alice", reason="written by the new version")
    prev, = db.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    row = db.execute("INSERT INTO audit_log (actor, action, detail, prev_hash, chain) VALUES "
                     "('system', 'login.new_device', '{}'::jsonb, %s, 2) RETURNING id, at, actor, action, "
                     "account_id, detail", (prev,)).fetchone()
    with container.store.transaction() as tx:
        mac = container.audit_log._chain.row_mac(tx, bytes(prev), row_body(*row[1:]))
    Owner(db)("UPDATE audit_log SET hash = %s WHERE id = %s", (mac, row[0]))  # its INSERT had it
    result = container.audit_log.verify()
    assert result.intact and result.sealed == 2, result
    Owner(db)("UPDATE audit_log SET detail = '{\"x\": 1}'::jsonb WHERE id = %s", (row[0],))
    assert container.audit_log.verify().broken_at == row[0]


def test_sealed_checkpoints_find_seals_cut_off_the_end(app, db):
    container = app.extensions["authsvc"]
    for i in range(3):
        container.clients.create(f"c{i}", operator="alice", reason=f"ticket {i} x")
    cp = container.audit_log.checkpoint()
    assert cp is not None and cp.seq == 3 and cp.public()["seal"] == 3
    assert container.audit_log.verify(external=[(cp.last_id, cp.head)]).intact
    # the role cannot store a checkpoint naming a seal that does not exist
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="names no row"):
        db.execute("INSERT INTO audit_checkpoints (at, last_id, seq, head, mac) VALUES (now(), %s, 9, %s, %s)",
                   (cp.last_id, cp.head, cp.mac))
    owner = Owner(db)
    owner("DELETE FROM audit_log WHERE id = %s", (cp.last_id,))
    owner("DELETE FROM audit_seals WHERE seq = 3")
    owner("DELETE FROM audit_checkpoints")
    assert container.audit_log.verify().intact  # nothing left in the database to compare with
    result = container.audit_log.verify(external=[(cp.last_id, cp.head)])
    assert not result.intact and "cut off the end" in result.problem, result


def test_a_stray_queue_entry_does_not_stop_the_sealer(app, db):
    """The queue is the service role's to write: an entry for a sealed row, or for no row, is
    dropped and the rows after it are sealed."""
    container = app.extensions["authsvc"]
    container.clients.create("a", operator="alice", reason="a real entry")
    container.audit_log.seal_all()
    sealed_row = _seals(db)[0][1]
    db.execute("INSERT INTO audit_unsealed (row_id) VALUES (%s), (%s)", (sealed_row, sealed_row + 1000))
    container.clients.create("b", operator="alice", reason="a later entry")
    container.audit_log.seal_all()
    assert len(_seals(db)) == 2 and db.execute("SELECT count(*) FROM audit_unsealed").fetchone()[0] == 0
    assert container.audit_log.verify(unsealed_bound=0).intact
