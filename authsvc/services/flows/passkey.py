"""Passkey sign-in: one phishing-resistant step, with no password to stuff.

Rules (docs/api-guide.md, `POST /v1/login/passkey`; README, "Password + second factor, or a
passkey"):
- a passkey is a WebAuthn factor enrolled with ``{"passkey": true}`` (resident key and user
  verification required); with user verification it proves two factors alone: ``amr``
  ``["hwk", "user", "mfa"]`` (``swk`` for a synced key), ``acr`` ``aal2``;
- ``options`` makes a challenge with no ``allowCredentials`` (the browser offers the user's
  passkeys for this relying party); the challenge is single-use, lives 5 minutes and is bound
  to its ``challenge_id``: it is consumed, in its own committed transaction, before the
  assertion is checked, so a failed assertion uses it up too and no assertion made for one
  challenge can answer another;
- the account is found from the credential id, and the assertion's ``userHandle`` must be that
  account's (W3C WebAuthn 7.2); an unknown credential, a foreign handle, a bad signature and a
  failed assertion for a frozen account all answer the same 401 ``invalid_factor`` after the
  same work (one signature check);
- after a valid assertion every rule of ``/v1/login/mfa`` holds, by the same code
  (``LoginService.finish``): frozen account (403 only now), forced password change or reset,
  known devices and the new-device notice; but not the account's second-factor lock, which
  only someone with the password (wrong second-factor answers) causes and which must not keep
  the owner's passkey out, from a new device either;
- a failed assertion is not counted against any account: it names a credential id, which is
  not a secret, so counting it would let anyone lock the owner out, while forging a signature
  is not a guessing game a counter could slow down.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ... import errors
from ...policy import ONE_TIME
from ...security.webauthn import WebAuthn
from ...store import Store
from ..core.ids import require_uuid
from ..core.sessions import RequestInfo, TokenPair
from ..factors.second_factor import SecondFactors
from .login import LoginService


@dataclass(frozen=True)
class PasskeyChallenge:
    challenge_id: str
    expires_in: int
    webauthn_options: dict


class PasskeyLogin:
    def __init__(self, *, store: Store, factors: SecondFactors, login: LoginService) -> None:
        self._store = store
        self._factors = factors
        self._login = login

    @property
    def _webauthn(self) -> WebAuthn:
        return self._factors.webauthn

    def options(self) -> PasskeyChallenge:
        options, challenge = self._webauthn.authentication_options(allow_credential_ids=[])
        challenge_id = str(uuid.uuid4())
        with self._store.transaction() as tx:
            tx.run("delete_stale_passkey_challenges")
            tx.run("insert_passkey_challenge", id=challenge_id, challenge=challenge, ttl=ONE_TIME.passkey_challenge_ttl)
        return PasskeyChallenge(challenge_id, ONE_TIME.passkey_challenge_ttl, options)

    def sign_in(self, *, challenge_id: str, credential: dict, info: RequestInfo) -> TokenPair:
        rejected = errors.InvalidFactor("the passkey was not accepted")
        require_uuid(challenge_id, rejected)
        with self._store.transaction() as tx:  # committed first: a failed assertion uses it up
            row = tx.one("consume_passkey_challenge", id=challenge_id)
        if row is None:
            raise rejected
        with self._store.transaction() as tx:
            found = self._factors.verify_passkey(tx, credential, bytes(row["challenge"]))
            if found is None:
                outcome: TokenPair | errors.AuthsvcError = rejected
            else:
                account_id, result = found
                outcome = self._login.finish(tx, account_id, result, info)
        return self._login.deliver(outcome)
