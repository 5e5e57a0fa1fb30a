"""W3C WebAuthn Level 2, section 7.2 step 6: when an assertion carries a userHandle, it must be
the user handle of the account that owns the credential. Over HTTP against the real database,
with a software authenticator whose assertions py_webauthn verifies for real."""

from __future__ import annotations

import os

import pytest

from tests.support.flows import bearer, enroll_webauthn, login_password, register
from tests.support.soft_authenticator import SoftAuthenticator


@pytest.fixture
def alice_and_bob(client, twilio, smtp):
    people = []
    for _ in range(2):
        account = register(client, twilio, smtp)
        key = SoftAuthenticator()
        enroll_webauthn(client, account["enrollment_token"], key)
        people.append({**account, "key": key})
    return people


def login_with(client, user, key):
    body = login_password(client, user).get_json()
    return client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                              "credential": key.get(body["webauthn_options"])})


def test_registration_gives_each_account_its_own_user_handle(alice_and_bob, db):
    alice, bob = alice_and_bob
    assert alice["key"].user_handle and bob["key"].user_handle
    assert alice["key"].user_handle != bob["key"].user_handle
    stored = {str(r[0]): bytes(r[1]) for r in db.execute("SELECT id, webauthn_user_id FROM accounts").fetchall()}
    assert stored[alice["account_id"]] == alice["key"].user_handle
    assert stored[bob["account_id"]] == bob["key"].user_handle


def test_an_assertion_with_another_accounts_user_handle_is_refused(client, alice_and_bob, db):
    alice, bob = alice_and_bob
    bob["key"].user_handle = alice["key"].user_handle  # Bob's credential, Alice's userHandle
    r = login_with(client, bob, bob["key"])
    assert r.status_code == 401 and r.get_json()["code"] == "invalid_factor"
    bob["key"].user_handle = os.urandom(32)  # nobody's
    assert login_with(client, bob, bob["key"]).status_code == 401
    assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_the_accounts_own_user_handle_or_none_is_accepted(client, alice_and_bob):
    alice, _ = alice_and_bob
    assert login_with(client, alice, alice["key"]).status_code == 200
    alice["key"].user_handle = None  # userHandle is optional for non-discoverable credentials
    assert login_with(client, alice, alice["key"]).status_code == 200


def test_step_up_checks_the_user_handle_too(client, alice_and_bob):
    alice, bob = alice_and_bob
    tokens = login_with(client, bob, bob["key"]).get_json()
    auth = bearer(tokens["access_token"])
    ch = client.post("/v1/step-up", json={"action": "factor.add"}, headers=auth).get_json()
    bob["key"].user_handle = alice["key"].user_handle
    r = client.post(f"/v1/step-up/{ch['challenge_id']}/verify",
                    json={"method": "webauthn", "credential": bob["key"].get(ch["webauthn_options"])}, headers=auth)
    assert r.status_code == 401


def _second_step_with_user_handle(client, user, user_handle):
    """``user``'s valid assertion on /v1/login/mfa, its userHandle replaced by ``user_handle``."""
    body = login_password(client, user).get_json()
    assertion = user["key"].get(body["webauthn_options"])
    assertion["response"]["userHandle"] = user_handle
    return client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                              "credential": assertion})


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_user_handle_counts_as_absent(client, alice_and_bob, empty):
    alice, _ = alice_and_bob  # some authenticators send an empty handle for non-resident credentials
    assert _second_step_with_user_handle(client, alice, empty).status_code == 200


@pytest.mark.parametrize("bad", ["not base64!", "AAAA=", 42, ["x"]])
def test_a_malformed_user_handle_is_refused(client, alice_and_bob, bad):
    alice, _ = alice_and_bob
    assert _second_step_with_user_handle(client, alice, bad).status_code == 401
