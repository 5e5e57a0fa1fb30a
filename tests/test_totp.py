import base64
import shutil
import subprocess
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from authsvc import errors
from authsvc.security import totp

NOW = 1_700_000_015.0  # inside step 56_666_667
STEP = int(NOW // 30)


# A fixed secret keeps the window tests deterministic (no chance collisions between steps).
SECRET = "D2BSCN34JVNYKCCJ4VHQDNTOOWRQ4C7P"


@pytest.fixture
def secret():
    return SECRET


def code_at(secret, step):
    return pyotp.TOTP(secret).at(step * 30)


def test_new_secret_is_160_bits():
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) >= 20
    assert totp.new_secret() != secret


def test_provisioning_uri(secret):
    uri = totp.provisioning_uri(secret, account_name="alice@example.com", issuer="Pay App")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parse_qs(parts.query) == {"secret": [secret], "issuer": ["Pay App"]}
    assert "alice%40example.com" in parts.path


def test_current_step():
    assert totp.current_step(NOW) == STEP
    assert totp.current_step(59.9) == 1


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_accepts_window(secret, offset):
    assert totp.verify(secret, code_at(secret, STEP + offset), last_step=None, now=NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_rejects_outside_window(secret, offset):
    code = code_at(secret, STEP + offset)
    assert code not in {code_at(secret, STEP + d) for d in (-1, 0, 1)}
    assert totp.verify(secret, code, last_step=None, now=NOW) is None
    assert totp.verify(secret, code, last_step=None, now=NOW, window=2) == STEP + offset


def test_rejects_reused_and_earlier_step(secret):
    code = code_at(secret, STEP)
    step = totp.verify(secret, code, last_step=None, now=NOW)
    assert step == STEP
    assert totp.verify(secret, code, last_step=step, now=NOW) is None  # replay
    assert totp.verify(secret, code, last_step=step, now=NOW + 30) is None  # replay, next step
    assert totp.verify(secret, code_at(secret, STEP - 1), last_step=step, now=NOW) is None  # earlier
    assert totp.verify(secret, code_at(secret, STEP + 1), last_step=step, now=NOW) == STEP + 1


def test_wrong_code_rejected(secret):
    good = code_at(secret, STEP)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    assert bad not in {code_at(secret, STEP + d) for d in (-1, 0, 1)}
    assert totp.verify(secret, bad, last_step=None, now=NOW) is None


@pytest.mark.parametrize(
    "code", [" 123456", "123456 ", "１２３４５６", "12345", "1234567", "12 3456", "١٢٣٤٥٦", "", None]
)
def test_malformed_codes(code):
    assert totp.is_well_formed(code) is False


def test_int_code_rejected(secret):
    assert totp.is_well_formed(123456) is False
    good = code_at(secret, STEP)
    assert good[0] != "0"  # so int(good) has the same digits
    assert totp.verify(secret, int(good), last_step=None, now=NOW) is None


def test_malformed_variants_of_valid_code_rejected(secret):
    good = code_at(secret, STEP)
    fullwidth = good.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for variant in (" " + good, good + " ", fullwidth, good[:5]):
        assert totp.verify(secret, variant, last_step=None, now=NOW) is None
    assert totp.is_well_formed(good)


def test_unusable_secret_raises_our_error():
    with pytest.raises(errors.AuthsvcError):
        totp.verify("!!!not-base32!!!", "123456", last_step=None, now=NOW)
    with pytest.raises(errors.AuthsvcError):
        totp.verify("JBSWY3DP", "123456", last_step=None, now=NOW)  # 40 bits


def oathtool(secret: str, now: int) -> str:
    return subprocess.run(
        ["oathtool", "--totp", "--base32", f"--now=@{now}", secret],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool not installed")
def test_code_from_oathtool_accepted(secret):
    now = 1_800_000_000
    code = oathtool(secret, now)
    assert totp.is_well_formed(code)
    assert totp.verify(secret, code, last_step=None, now=now) == now // 30
    assert totp.verify(secret, code, last_step=now // 30, now=now) is None
    fresh = totp.new_secret()
    assert totp.verify(fresh, oathtool(fresh, now), last_step=None, now=now) is not None
