"""Key rotation across a fleet (README, "A fleet of replicas"): after the operator's
`keys rotate` in its own process, every replica publishes the new key before any replica signs
with it, and every replica signs with it right after its activation."""

from __future__ import annotations

import threading
import time

from authsvc.services.platform.keys import PUBLISH_LEAD
from tests.fleet.conftest import random_ip
from tests.fleet.flows import kid_of, new_account, sign_in

ACTIVATE_IN = 4
BOUND = 2.0  # seconds after the activation within which every replica signs with the new key


def test_keys_rotate_reaches_every_replica_before_its_tokens(fleet, twilio, smtp):
    clients = fleet.clients()
    account = new_account(clients[0], twilio, smtp)
    sessions = [sign_in(c, account) for c in clients]  # a session (refresh chain) per replica
    old = kid_of(sessions[0]["access_token"])
    for c in clients:  # every replica (both workers, most likely) has the key set cached
        for _ in range(4):
            assert old in {k["kid"] for k in c.get("/.well-known/jwks.json").get_json()["keys"]}

    stop = threading.Event()
    jwks_seen: list[tuple[int, float, float, set[str]]] = []  # replica, sent, answered, kids
    signed: list[tuple[int, float, float, str]] = []  # replica, sent, answered, kid

    def probe(i: int) -> None:
        c, refresh = clients[i], sessions[i]["refresh_token"]
        while not stop.is_set():
            sent = time.monotonic()
            r = c.get("/.well-known/jwks.json")
            assert r.status_code == 200, r
            jwks_seen.append((i, sent, time.monotonic(), {k["kid"] for k in r.get_json()["keys"]}))
            sent = time.monotonic()
            r = c.post("/v1/token/refresh", json={"refresh_token": refresh},
                       headers={"X-Forwarded-For": random_ip()})  # many users: under the per-IP limit
            assert r.status_code == 200, r
            refresh = r.get_json()["refresh_token"]
            signed.append((i, sent, time.monotonic(), kid_of(r.get_json()["access_token"])))
            time.sleep(0.05)

    threads = [threading.Thread(target=probe, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        rotated = time.monotonic()
        out = fleet.cli("keys", "rotate", "--activate-in", str(ACTIVATE_IN), "--reason", "fleet rotation test")
        returned = time.monotonic()
        assert f"signs in {ACTIVATE_IN}s" in out
        new = out.split()[3]
        deadline = returned + ACTIVATE_IN + BOUND + 3
        while time.monotonic() < deadline:
            if all(any(k == new and i == j for j, _, _, k in signed) for i in range(len(clients))):
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    # every replica signs with the new key within the bound of its activation
    for i in range(len(clients)):
        first_new = min((answered for j, _, answered, k in signed if j == i and k == new), default=None)
        assert first_new is not None, f"replica {i} never signed with the new key"
        assert first_new - rotated <= ACTIVATE_IN + BOUND + (returned - rotated), (i, first_new - rotated)
        # and never with the old one once a request sent after the activation bound is answered
        late_old = [s for j, s, _, k in signed if j == i and k == old and s > returned + ACTIVATE_IN + BOUND]
        assert not late_old, f"replica {i} still signed with the old key {late_old[-1] - returned:.1f}s after"
    # no JWKS, on any replica, lacks the new key once any token carrying it was given out
    first_token = min(answered for _, _, answered, k in signed if k == new)
    stale = [(i, sent) for i, sent, _, kids in jwks_seen if sent > first_token and new not in kids]
    assert not stale, f"JWKS without the new key after its first token: {stale[:3]}"
    # and the new key appeared in every replica's JWKS within the publication lead
    for i in range(len(clients)):
        listed = min(answered for j, _, answered, kids in jwks_seen if j == i and new in kids)
        assert listed - returned < PUBLISH_LEAD, (i, listed - returned)


def test_a_withdrawn_key_stops_on_every_replica_at_once(fleet, twilio, smtp):
    """A compromised key: rotate (the new key signs after the lead), then `keys withdraw` the
    old one: its tokens are refused by every replica as soon as the command returns."""
    from tests.fleet.flows import introspect, new_backend

    clients = fleet.clients()
    account = new_account(clients[0], twilio, smtp)
    old_token = sign_in(clients[0], account)["access_token"]
    old = kid_of(old_token)
    _, backend = new_backend(fleet)
    refused = fleet.cli("keys", "withdraw", old, "--reason", "compromised, fleet test", check=False)
    assert "signs now" in refused  # not the key that signs
    new = fleet.cli("keys", "rotate", "--activate-in", "0", "--reason", "compromise, fleet test").split()[3]
    deadline = time.monotonic() + PUBLISH_LEAD + 10
    while kid_of(sign_in(clients[1], account)["access_token"]) != new:
        assert time.monotonic() < deadline, "the new key did not sign"
        time.sleep(0.2)
    for c in clients:
        assert introspect(c, backend, old_token).get_json()["active"] is True
    fleet.cli("keys", "withdraw", old, "--reason", "compromised, fleet test")
    for c in clients:  # at once, every replica (both workers)
        for _ in range(3):
            assert introspect(c, backend, old_token).get_json() == {"active": False}
    assert old not in {k["kid"] for c in clients for k in c.get("/.well-known/jwks.json").get_json()["keys"]}
