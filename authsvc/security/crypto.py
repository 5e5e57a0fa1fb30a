"""Encryption of stored secrets (AES-256-GCM with key rotation), MACs and random tokens.

Token format: ``v1.<kid>.<base64url(nonce || ciphertext+tag)>`` (no padding). The first
key encrypts; every configured key decrypts, so a new key rolls out decrypt-only first, then
as the encrypting one (README, "A fleet of replicas").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .. import errors
from . import contexts

_VERSION = "v1"
_NONCE_LEN = 12
_TAG_LEN = 16
_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not _B64URL_RE.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64e(data) != text:  # only the canonical encoding is accepted
        raise ValueError("non-canonical base64url")
    return data


def mac_equals(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MACs or digests."""
    return hmac.compare_digest(a, b)


class Cipher:
    """AES-256-GCM under ``Settings.encryption_keys`` (first key encrypts, all decrypt)."""

    mac_equals = staticmethod(mac_equals)

    def __init__(self, keys: tuple[tuple[str, bytes], ...]) -> None:
        if not keys:
            raise errors.ConfigError("at least one encryption key is required")
        self._aead: dict[str, AESGCM] = {}
        for kid, key in keys:
            if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
                raise errors.ConfigError("key ids must be 1-32 letters, digits, '-' or '_'")
            if not isinstance(key, bytes) or len(key) != 32:
                raise errors.ConfigError(f"key {kid!r} must be 32 bytes")
            if kid in self._aead:
                raise errors.ConfigError(f"key id {kid!r} appears twice")
            self._aead[kid] = AESGCM(key)
        self.current_kid = keys[0][0]
        # one MAC key per encryption key, the current one's first
        self._mac_keys = [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=contexts.MAC_KEY_INFO).derive(key)
            for _, key in keys
        ]
        self._mac_key = self._mac_keys[0]

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> str:
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aead[self.current_kid].encrypt(nonce, plaintext, aad)
        return f"{_VERSION}.{self.current_kid}.{_b64e(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: bytes) -> bytes:
        try:
            version, kid, body = token.split(".")
            if version != _VERSION:
                raise ValueError("unknown version")
            raw = _b64d(body)
        except (AttributeError, ValueError, binascii.Error):
            raise errors.DecryptionError("malformed ciphertext") from None
        aead = self._aead.get(kid)
        if aead is None:
            raise errors.DecryptionError("unknown encryption key id")
        if len(raw) < _NONCE_LEN + _TAG_LEN:
            raise errors.DecryptionError("malformed ciphertext")
        try:
            return aead.decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], aad)
        except InvalidTag:
            raise errors.DecryptionError("ciphertext or associated data was altered") from None

    def needs_reencrypt(self, token: str) -> bool:
        """True when ``token`` was not made with the current key (re-encrypt it on next use)."""
        parts = token.split(".") if isinstance(token, str) else []
        return len(parts) != 3 or parts[0] != _VERSION or parts[1] != self.current_kid

    def mac(self, purpose: str, value: str | bytes) -> bytes:
        """HMAC-SHA256 of ``purpose || 0x00 || value`` under a key derived from the current key.

        For short codes (6-digit SMS/email codes) kept in the database. Check one with
        :meth:`mac_matches`, which accepts a MAC made under any configured key: a code made by
        a replica whose current key differs (during a key roll-out), or before a rotation,
        still verifies.
        """
        return self._mac_with(self._mac_key, purpose, value)

    def mac_matches(self, stored: bytes, purpose: str, value: str | bytes) -> bool:
        """Whether ``stored`` is the MAC of ``value`` under any configured key (every key is
        tried, each compared in constant time)."""
        stored = bytes(stored)
        matched = False
        for key in self._mac_keys:
            matched |= mac_equals(stored, self._mac_with(key, purpose, value))
        return matched

    @staticmethod
    def _mac_with(key: bytes, purpose: str, value: str | bytes) -> bytes:
        if "\x00" in purpose:
            raise ValueError("purpose must not contain NUL")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return hmac.new(key, purpose.encode("utf-8") + b"\x00" + data, hashlib.sha256).digest()


def hash_token(token: str) -> bytes:
    """SHA-256 of a high-entropy random token (enough for 256-bit tokens; no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_numeric_code(digits: int = 6) -> str:
    if digits < 1:
        raise ValueError("digits must be at least 1")
    return str(secrets.randbelow(10**digits)).zfill(digits)
