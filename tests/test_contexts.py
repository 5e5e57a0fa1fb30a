"""The context labels bound into stored ciphertexts, MACs and digests (authsvc/security/contexts.py).

Each is a data format: a changed label makes every value stored with it unreadable, so the exact
bytes are pinned here, and the encrypted columns ``keys reencrypt`` walks are checked against the
columns ``keys usage`` counts (a column missing from the walk would keep an old key in use)."""

import re
from pathlib import Path

import pytest

from authsvc import errors
from authsvc.security import contexts
from authsvc.security.crypto import Cipher

QUERIES = Path(__file__).resolve().parent.parent / "authsvc" / "store" / "queries"


def test_encryption_labels_are_the_stored_formats():
    assert contexts.totp_secret_aad("f-1") == b"totp-secret:f-1"
    assert contexts.signing_key_aad("k\u00e9") == b"signing-key:k\xc3\xa9"
    assert contexts.outbox_aad("sms") == b"authsvc outbox v1sms"
    assert contexts.outbox_aad("bundle") == b"authsvc outbox v1bundle"
    assert contexts.audit_chain_key_aad(1) == b"audit-chain-key:1"
    assert contexts.MAC_KEY_INFO == b"authsvc mac v1"


def test_mac_and_digest_labels_are_the_stored_formats():
    assert contexts.login_sms_purpose("t") == "login-sms:t"
    assert contexts.registration_purpose("r", "phone") == "registration:r:phone"
    assert contexts.password_reset_purpose("r") == "password-reset:r"
    assert contexts.contact_change_purpose("c") == "contact-change:c"
    assert contexts.AUDIT_ROW_LABEL == b"authsvc audit row v2\x00"
    assert contexts.AUDIT_UNLINKED_LABEL == b"authsvc audit row v3\x00"
    assert contexts.AUDIT_SEAL_LABEL == b"authsvc audit seal v1\x00"
    assert contexts.AUDIT_CHECKPOINT_LABEL == b"authsvc audit checkpoint v1\x00"
    assert contexts.AUDIT_SEALED_CHECKPOINT_LABEL == b"authsvc audit checkpoint v2\x00"
    assert contexts.PASSWORD_HASH_FP_LABEL == b"authsvc password hash fp v1\x00"
    assert contexts.RECOVERY_CODE_LABEL == b"authsvc recovery code v1\x00"
    assert contexts.STEP_UP_LABEL == b"authsvc step-up v1\x00"
    assert contexts.THROTTLE_EMAIL_LABEL == b"authsvc throttle email v1\x00"


def test_labels_are_distinct():
    labels = [v for k, v in vars(contexts).items() if k.endswith(("_LABEL", "_AAD", "_INFO"))]
    assert len(labels) == len(set(labels)) == 11


def test_a_ciphertext_does_not_open_under_another_context():
    cipher = Cipher((("k1", bytes(range(32))),))
    sealed = cipher.encrypt(b"secret", aad=contexts.totp_secret_aad("x"))
    assert cipher.decrypt(sealed, aad=contexts.totp_secret_aad("x")) == b"secret"
    with pytest.raises(errors.DecryptionError):
        cipher.decrypt(sealed, aad=contexts.signing_key_aad("x"))


def test_reencrypt_walks_every_encrypted_column_usage_counts():
    sql = (QUERIES / "reencrypt.sql").read_text()
    usage = sql.split("-- name: key_usage", 1)[1].split("-- name:", 1)[0]
    counted = set(re.findall(r"SELECT '([a-z_]+)'", usage))
    walked = {c.name for c in contexts.ENCRYPTED_COLUMNS}
    assert counted == walked | {"audit_chain_key"}  # the chain key is re-wrapped by AuditChain.rewrap
    names = set(re.findall(r"-- name: (\w+)", sql))
    for column in contexts.ENCRYPTED_COLUMNS:
        assert {column.batch_query, column.update_query} <= names
