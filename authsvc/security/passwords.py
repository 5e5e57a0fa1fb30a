"""Password hashing (argon2id) and the password policy.

Nothing here logs or echoes a password. Passwords are NFKC-normalized before they are
checked, hashed or verified, so the same password typed on different keyboards matches.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
import threading
import unicodedata
from array import array
from bisect import bisect_left
from importlib import resources
from typing import NoReturn

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from .. import errors
from . import contexts

MIN_LENGTH = 8
MAX_LENGTH = 128
_LIST_RESOURCE = "data/common-passwords.txt.gz"


def normalize_password(p: str) -> str:
    """NFKC: full-width letters, ligatures and composed/decomposed accents compare equal."""
    return unicodedata.normalize("NFKC", p)


def _encode(p: str) -> bytes:
    # "surrogatepass": a lone surrogate (possible from JSON "\ud800") must not raise here;
    # the policy rejects such passwords, so they never match a stored hash.
    return normalize_password(p).encode("utf-8", "surrogatepass")


class PasswordHasher:
    """argon2id with our parameters; never raises on a wrong password or a corrupt hash."""

    def __init__(self, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1) -> None:
        self._ph = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._ph.hash(_encode(password))

    def verify(self, stored_hash: str, password: str) -> bool:
        if not isinstance(stored_hash, str):
            return False
        try:
            return self._ph.verify(stored_hash, _encode(password))
        except (VerificationError, InvalidHashError):  # includes VerifyMismatchError
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters (or cannot be parsed)."""
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError, TypeError):
            return True

    def dummy_verify(self, password: str) -> None:
        """Spend the time of a real verification (for unknown users)."""
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self._ph.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)


def hash_fingerprint(stored_hash: str) -> bytes:
    """An identifier of one stored password hash (not of the password: the hash is salted).
    Proofs that follow a password check (an mfa_token) carry it, so a new password, which
    always has a new hash, ends them."""
    return hashlib.sha256(contexts.PASSWORD_HASH_FP_LABEL + stored_hash.encode()).digest()


def too_long(password: str) -> bool:
    """Longer than the policy allows after NFKC: a fast 400 at login, before any hashing."""
    return len(password) > 4 * MAX_LENGTH or len(normalize_password(password)) > MAX_LENGTH


# --- bundled list of common / breached passwords ------------------------------------------
# Held as a sorted array of 64-bit blake2b digests (~1.6 MB for 200k entries) instead of a
# set of Python strings (~20 MB). A digest match can be a false positive (about 1e-14 per
# lookup), never a false negative.
_common: array | None = None
_common_lock = threading.Lock()


def _digest(p: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(p.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )


def _common_digests() -> array:
    global _common
    if _common is None:
        with _common_lock:
            if _common is None:
                raw = resources.files(__package__).joinpath(_LIST_RESOURCE).read_bytes()
                lines = gzip.decompress(raw).decode("utf-8").split("\n")
                _common = array("Q", sorted({_digest(line) for line in lines if line}))
    return _common


def common_password_count() -> int:
    """Number of distinct entries in the bundled list (loads it on first use)."""
    return len(_common_digests())


def is_common_password(password: str) -> bool:
    """Exact lookup of an already-normalized password in the bundled list."""
    digests = _common_digests()
    d = _digest(password)
    i = bisect_left(digests, d)
    return i < len(digests) and digests[i] == d


class PasswordPolicy:
    """Length and blocklist rules (NIST SP 800-63B style, no composition rules).

    ``check`` returns the NFKC-normalized password or raises :class:`errors.WeakPassword`:

    * 8 to 128 characters after NFKC;
    * not on the bundled list of common/breached passwords (as typed, or casefolded);
    * must not contain the local part of ``email`` (casefolded). The rule applies only when
      the local part has at least 3 characters: a 1-2 character local part (``jo@...``)
      would forbid a large share of all passwords for no real gain.
    """

    def check(self, password: str, *, email: str | None = None) -> str:
        if not isinstance(password, str):
            _reject("Password must be a string.")
        # Fast rejection before any other work. NFKC can shrink a string at most 4x (the
        # longest canonical decomposition is 4 code points), so this never rejects a
        # password that would be <= MAX_LENGTH after normalization.
        if len(password) > 4 * MAX_LENGTH:
            _reject(f"Password must be at most {MAX_LENGTH} characters.")
        normalized = normalize_password(password)
        if len(normalized) > MAX_LENGTH:
            _reject(f"Password must be at most {MAX_LENGTH} characters.")
        if len(normalized) < MIN_LENGTH:
            _reject(f"Password must be at least {MIN_LENGTH} characters.")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in normalized):
            _reject("Password contains invalid characters.")

        folded = normalized.casefold()
        if is_common_password(normalized) or is_common_password(folded):
            _reject("This password is too common; choose a different one.")
        if email:
            local = normalize_password(email).rpartition("@")[0].casefold()
            if len(local) >= 3 and local in folded:
                _reject("Password must not contain your email address.")
        return normalized


def _reject(message: str) -> NoReturn:
    raise errors.WeakPassword(message, errors=[{"field": "password", "message": message}])
