"""Every context label the service binds into its cryptography, in one place.

A label says what a ciphertext, MAC or digest is *for*, so one made for one purpose can never
pass as another (a TOTP secret's ciphertext moved into a signing key's row fails to decrypt;
a registration code's MAC does not verify as a reset code's). Changing any value here makes
every stored value made with it unreadable: these are data formats, not settings.

- ``*_aad``: the associated data of an AES-GCM ciphertext (``Cipher.encrypt(..., aad=)``).
- ``*_purpose``: the purpose of a code's MAC (``Cipher.mac(purpose, code)``).
- ``*_LABEL``: the prefix of an audit-chain HMAC or of a domain-separated SHA-256 digest.

``ENCRYPTED_COLUMNS`` lists every encrypted column ``authsvc keys reencrypt`` walks (the audit
chain key, a single row, is re-wrapped by ``AuditChain.rewrap`` with :func:`audit_chain_key_aad`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- encryption (AES-GCM AAD)


def totp_secret_aad(factor_id: str) -> bytes:
    """A TOTP factor's secret (``second_factors.totp_secret_enc``, pending ones too)."""
    return b"totp-secret:" + factor_id.encode()


def signing_key_aad(kid: str) -> bytes:
    """The private half of a token signing key (``signing_keys.private_key_enc``)."""
    return b"signing-key:" + kid.encode("utf-8")


OUTBOX_AAD = b"authsvc outbox v1"


def outbox_aad(kind: str) -> bytes:
    """An outbox payload of ``kind`` (``sms``, ``email``, ``webhook``, ...; ``bundle`` for several
    messages in one row)."""
    return OUTBOX_AAD + kind.encode()


def audit_chain_key_aad(key_id: int) -> bytes:
    """The audit chain's HMAC key (``audit_chain_keys.key_enc``)."""
    return f"audit-chain-key:{key_id}".encode()


# ---------------------------------------------------------------- MAC keys and code MACs

MAC_KEY_INFO = b"authsvc mac v1"  # HKDF info deriving the MAC key from each encryption key


def login_sms_purpose(token_id: str) -> str:
    """The SMS code of a sign-in's enrolment step (``mfa_tokens.sms_code_mac``)."""
    return f"login-sms:{token_id}"


def registration_purpose(registration_id: str, channel: str) -> str:
    """A registration's phone or email code (``channel``: ``phone`` or ``email``)."""
    return f"registration:{registration_id}:{channel}"


def password_reset_purpose(reset_id: str) -> str:
    """A password reset's SMS code."""
    return f"password-reset:{reset_id}"


def contact_change_purpose(change_id: str) -> str:
    """A contact change's code (to the new phone or email)."""
    return f"contact-change:{change_id}"


# ---------------------------------------------------------------- audit chain HMACs

AUDIT_ROW_LABEL = b"authsvc audit row v2\x00"  # a row linked by its writer (chain 2)
AUDIT_UNLINKED_LABEL = b"authsvc audit row v3\x00"  # a row alone, linked by the sealer (chain 3)
AUDIT_SEAL_LABEL = b"authsvc audit seal v1\x00"
AUDIT_CHECKPOINT_LABEL = b"authsvc audit checkpoint v1\x00"  # of a linked row
AUDIT_SEALED_CHECKPOINT_LABEL = b"authsvc audit checkpoint v2\x00"  # of a seal

# ---------------------------------------------------------------- domain-separated digests

PASSWORD_HASH_FP_LABEL = b"authsvc password hash fp v1\x00"
RECOVERY_CODE_LABEL = b"authsvc recovery code v1\x00"
STEP_UP_LABEL = b"authsvc step-up v1\x00"
THROTTLE_EMAIL_LABEL = b"authsvc throttle email v1\x00"


# ---------------------------------------------------------------- what reencrypt walks


@dataclass(frozen=True)
class EncryptedColumn:
    """One kind of stored ciphertext ``reencrypt`` walks in batches: the named queries reading a
    batch past a cursor (rows ``id``, ``sealed`` and what the AAD needs) and swapping one row,
    the cursor before the first id, and the row's AAD."""

    name: str
    batch_query: str
    update_query: str
    first_cursor: str
    aad: Callable[[Mapping[str, Any]], bytes]


ENCRYPTED_COLUMNS = (
    EncryptedColumn("totp_secrets", "reencrypt_totp_batch", "reencrypt_totp_update",
                    "00000000-0000-0000-0000-000000000000", lambda r: totp_secret_aad(r["id"])),
    EncryptedColumn("signing_keys", "reencrypt_signing_key_batch", "reencrypt_signing_key_update",
                    "", lambda r: signing_key_aad(r["id"])),
    EncryptedColumn("outbox", "reencrypt_outbox_batch", "reencrypt_outbox_update",
                    "0", lambda r: outbox_aad(r["kind"])),
)
