import base64
import hashlib
import os
import re

import pytest

from authsvc import errors
from authsvc.security import crypto
from authsvc.security.crypto import Cipher

K1 = ("k1", os.urandom(32))
K2 = ("k2", os.urandom(32))
AAD = b"user:42|totp"


def test_roundtrip_and_format():
    c = Cipher((K1,))
    token = c.encrypt(b"JBSWY3DPEHPK3PXP", aad=AAD)
    assert re.fullmatch(r"v1\.k1\.[A-Za-z0-9_-]+", token)
    assert c.decrypt(token, aad=AAD) == b"JBSWY3DPEHPK3PXP"
    assert c.encrypt(b"x", aad=AAD) != c.encrypt(b"x", aad=AAD)  # random nonce
    assert c.decrypt(c.encrypt(b"", aad=b""), aad=b"") == b""


def test_wrong_aad_raises():
    c = Cipher((K1,))
    token = c.encrypt(b"secret", aad=AAD)
    with pytest.raises(errors.DecryptionError):
        c.decrypt(token, aad=b"user:43|totp")


def test_tampering_raises():
    c = Cipher((K1,))
    token = c.encrypt(b"secret", aad=AAD)
    prefix, body = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for i in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(raw)
        flipped[i] ^= 1
        forged = prefix + "." + base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(errors.DecryptionError):
            c.decrypt(forged, aad=AAD)


@pytest.mark.parametrize(
    "token",
    ["", "v1.k1", "v2.k1.AAAA", "v1.k1.!!!!", "v1.k1.AAAA", "v1.k1.a.b", "garbage", None],
)
def test_bad_format_raises(token):
    with pytest.raises(errors.DecryptionError):
        Cipher((K1,)).decrypt(token, aad=AAD)


def test_unknown_kid_raises():
    token = Cipher((K2,)).encrypt(b"secret", aad=AAD)
    with pytest.raises(errors.DecryptionError):
        Cipher((K1,)).decrypt(token, aad=AAD)


def test_same_kid_other_key_raises():
    token = Cipher((K1,)).encrypt(b"secret", aad=AAD)
    with pytest.raises(errors.DecryptionError):
        Cipher((("k1", os.urandom(32)),)).decrypt(token, aad=AAD)


def test_rotation():
    old = Cipher((K1,))
    token = old.encrypt(b"secret", aad=AAD)
    rotated = Cipher((K2, K1))
    assert rotated.decrypt(token, aad=AAD) == b"secret"
    assert rotated.needs_reencrypt(token) is True
    assert old.needs_reencrypt(token) is False
    fresh = rotated.encrypt(b"secret", aad=AAD)
    assert fresh.startswith("v1.k2.") and rotated.needs_reencrypt(fresh) is False


@pytest.mark.parametrize(
    "keys",
    [(), (("k1", b"short"),), (("bad.kid", os.urandom(32)),), (K1, ("k1", os.urandom(32)))],
)
def test_bad_keys_rejected(keys):
    with pytest.raises(errors.ConfigError):
        Cipher(keys)


def test_mac():
    c = Cipher((K1,))
    m = c.mac("sms", "123456")
    assert len(m) == 32
    assert crypto.mac_equals(m, c.mac("sms", b"123456"))
    assert c.mac_equals(m, c.mac("sms", "123456"))
    assert not crypto.mac_equals(m, c.mac("sms", "123457"))
    assert not crypto.mac_equals(m, c.mac("email", "123456"))  # purpose separates
    assert c.mac("ab", "c") != c.mac("a", "bc")  # separator
    assert m != Cipher((K2,)).mac("sms", "123456")  # keyed
    assert m != hashlib.sha256(b"sms\x00123456").digest()
    # Keyed from the current key via HKDF, not the raw AES key.
    assert Cipher((K1, K2)).mac("sms", "123456") == m
    assert m != __import__("hmac").new(K1[1], b"sms\x00123456", "sha256").digest()


def test_tokens_and_codes():
    t = crypto.new_token()
    assert len(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))) == 32
    assert crypto.new_token() != t
    assert crypto.hash_token(t) == hashlib.sha256(t.encode()).digest()
    codes = {crypto.new_numeric_code() for _ in range(2000)}
    assert all(re.fullmatch(r"[0-9]{6}", c) for c in codes)
    assert len(codes) > 1900
    assert any(c.startswith("0") for c in codes)  # zero-padded (P(miss) ~ 1e-92)
    assert re.fullmatch(r"[0-9]{8}", crypto.new_numeric_code(8))
