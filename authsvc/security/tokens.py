"""ES256 access tokens (RFC 9068 ``at+jwt``): a thin wrapper around PyJWT.

No JWT is built or parsed by hand here: PyJWT signs and verifies, this module only pins the
choices (ES256 only, ``kid`` picks the key, required claims, issuer and audience) and turns
every library error into :class:`authsvc.errors.InvalidToken` with a generic detail, so a
caller never learns *why* a token was refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from .. import errors

ALG = "ES256"
TYP = "at+jwt"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "sid", "jti")
_PUBLIC_JWK_MEMBERS = ("kty", "crv", "x", "y", "kid", "alg", "use")
_TYPS = {TYP, "application/" + TYP}
_GENERIC = "invalid or expired token"

PublicKey = ec.EllipticCurvePublicKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> bytes:
    """RFC 7638 SHA-256 thumbprint of an EC public JWK."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def generate_es256_key() -> tuple[str, bytes, dict[str, Any]]:
    """A new P-256 key: ``(kid, private key PEM (PKCS8, unencrypted), public JWK)``.

    ``kid`` is base64url of the first 16 bytes of the RFC 7638 thumbprint. The PEM is
    plaintext: the caller must encrypt it before storing it.
    """
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    public = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
    kid = _b64url(jwk_thumbprint(public)[:16])
    public.update(kid=kid, alg=ALG, use="sig")
    return kid, pem, public


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Only the public members of a JWK (never ``d``), for publishing."""
    return {k: jwk[k] for k in _PUBLIC_JWK_MEMBERS if k in jwk}


def load_public_key(key: Mapping[str, Any] | PublicKey) -> PublicKey:
    """A P-256 public key from a JWK dict (or a key object, checked). ``ValueError`` if not one."""
    loaded: object = key
    if isinstance(key, Mapping):
        if key.get("kty") != "EC" or key.get("crv") != "P-256" or "d" in key:
            raise ValueError("not a public P-256 JWK")
        if key.get("alg", ALG) != ALG:
            raise ValueError("JWK is not for ES256")
        try:
            loaded = ECAlgorithm.from_jwk(dict(public_jwk(key)))
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise ValueError("invalid JWK") from exc
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise ValueError("not a P-256 public key")
    return loaded


def load_private_key(private_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 private key")
    return key


def sign(
    claims: Mapping[str, Any],
    *,
    kid: str,
    private_pem: bytes | ec.EllipticCurvePrivateKey,
) -> str:
    """Sign ``claims`` with ES256; header ``{"alg":"ES256","kid":kid,"typ":"at+jwt"}``.

    ``private_pem`` may also be an already loaded P-256 private key (avoids parsing the PEM
    on every call).
    """
    key = private_pem if isinstance(private_pem, ec.EllipticCurvePrivateKey) else load_private_key(private_pem)
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid must be a non-empty string")
    return jwt.encode(dict(claims), key, algorithm=ALG, headers={"kid": kid, "typ": TYP})


def header_kid(token: str) -> str | None:
    """The ``kid`` of the (unverified!) header, or None. Only for choosing/refreshing keys."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None
    return kid if isinstance(kid, str) and kid else None


def decode(
    token: str,
    *,
    public_keys: Mapping[str, Mapping[str, Any] | PublicKey],
    issuer: str,
    audience: str,
    leeway: int = 30,
) -> dict[str, Any]:
    """Verify an access token and return its claims; :class:`errors.InvalidToken` otherwise.

    The key is picked by the header's ``kid`` among ``public_keys`` (JWK dicts or P-256 public
    key objects); only ES256 is accepted (``none``, HMAC and RSA tokens are refused), the
    header ``typ`` must be ``at+jwt``, ``exp iat iss aud sub sid jti`` are required and
    ``iss``, ``aud``, ``exp`` (and ``iat``/``nbf`` not in the future) are checked with
    ``leeway`` seconds of clock skew.
    """
    if not isinstance(token, str) or not token or len(token) > 8192:
        raise errors.InvalidToken(_GENERIC)
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise errors.InvalidToken(_GENERIC) from None
    kid = header.get("kid")
    if (
        header.get("alg") != ALG
        or not isinstance(kid, str)
        or kid not in public_keys
        or not isinstance(header.get("typ"), str)
        or header["typ"].lower() not in _TYPS
        or "crit" in header  # we understand no extension, so none may be critical
        or "b64" in header
    ):
        raise errors.InvalidToken(_GENERIC)
    try:
        key = load_public_key(public_keys[kid])
    except ValueError:
        raise errors.InvalidToken(_GENERIC) from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALG],
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_signature": True,
                "verify_exp": True,
                "verify_iat": True,
                "verify_nbf": True,
                "verify_iss": True,
                "verify_aud": True,
                "strict_aud": False,
            },
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        raise errors.InvalidToken(_GENERIC) from None
    for name in ("sub", "sid", "jti"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise errors.InvalidToken(_GENERIC)
    return claims
