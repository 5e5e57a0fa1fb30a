import gzip
import secrets
import string
from importlib import resources

import pytest

from authsvc import errors
from authsvc.security import passwords
from authsvc.security.passwords import PasswordHasher, PasswordPolicy, normalize_password

# Cheapest argon2id parameters argon2 accepts: keeps the suite fast.
FAST = dict(time_cost=1, memory_cost=8, parallelism=1)


def random_passphrase(n: int = 16) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def rejected(password: str, **kw) -> errors.WeakPassword:
    with pytest.raises(errors.WeakPassword) as info:
        PasswordPolicy().check(password, **kw)
    return info.value


# --- policy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pw", ["password", "iloveyou1", "Password123", "qwertyuiop", "12345678"])
def test_common_passwords_rejected(pw):
    assert passwords.is_common_password(pw)
    exc = rejected(pw)
    assert exc.errors == [{"field": "password", "message": exc.detail}]
    assert "too common" in exc.detail


def test_casefolded_form_is_checked():
    assert not passwords.is_common_password("PASSWORD123")  # not on the list as typed
    assert "too common" in rejected("PASSWORD123").detail


def test_messages_never_echo_the_password():
    marker = "Zq7" + random_passphrase(10)
    cases = [
        (marker[:7], {}),  # too short
        (marker * 20, {}),  # too long
        (marker + "alice", {"email": "alice@example.com"}),  # email rule
    ]
    for pw, kw in cases:
        exc = rejected(pw, **kw)
        shown = exc.detail + repr(exc.errors) + str(exc) + repr(exc.extra)
        assert marker[:7] not in shown


def test_random_passphrase_accepted():
    pw = random_passphrase(16)
    assert PasswordPolicy().check(pw) == pw


def test_length_bounds():
    rejected("aB3$xY9")  # 7
    rejected(random_passphrase(129))
    rejected(random_passphrase(100_000))
    assert PasswordPolicy().check("aB3$xY9!") == "aB3$xY9!"  # 8
    pw = random_passphrase(128)
    assert PasswordPolicy().check(pw) == pw


def test_nfkc_applied():
    # Full-width letters normalize to "password", which is on the list.
    assert normalize_password("ｐａｓｓｗｏｒｄ") == "password"
    rejected("ｐａｓｓｗｏｒｄ")
    # Length is counted after NFKC: 3 ligatures (U+FB03) become 9 characters ...
    assert PasswordPolicy().check("\ufb03\ufb03\ufb03") == "ffiffiffi"
    # ... and 10 code points composing into 5 accented letters are too short.
    assert len("e\u0301" * 5) == 10
    rejected("e\u0301" * 5)
    # 129 full-width characters are 129 after NFKC, too long.
    rejected("ｚ" * 129)


def test_email_local_part_rule():
    pw = "xx-Alice.Smith-2024!"
    exc = rejected(pw, email="alice.smith@example.com")
    assert "email" in exc.detail and pw not in exc.detail
    rejected("zz" + "ＡＬＩＣＥ" + "99zz", email="Alice@example.com")  # NFKC + casefold
    rejected("zz-alice-99zz", email="ａｌｉｃｅ@example.com")  # the email is normalized too
    assert PasswordPolicy().check(pw, email="bob@example.com") == pw
    # Local parts shorter than 3 characters are not enforced.
    assert PasswordPolicy().check("jo-rides-bikes-42", email="jo@example.com")


def test_lone_surrogate_rejected_not_crashing():
    rejected("abcdefgh\ud800")


def test_list_loaded_and_large():
    assert passwords.common_password_count() >= 100_000


def test_list_has_no_false_negatives():
    raw = resources.files("authsvc.security").joinpath("data/common-passwords.txt.gz").read_bytes()
    entries = gzip.decompress(raw).decode("utf-8").splitlines()
    assert len(entries) >= 100_000
    for entry in entries:
        assert 8 <= len(entry) <= 128 and normalize_password(entry) == entry
        assert passwords.is_common_password(entry), entry
    assert not passwords.is_common_password(random_passphrase(20))


# --- hashing --------------------------------------------------------------------------------
def test_hash_verify_roundtrip():
    ph = PasswordHasher(**FAST)
    h = ph.hash("correct horse battery staple")
    assert h.startswith("$argon2id$")
    assert ph.verify(h, "correct horse battery staple") is True
    assert ph.verify(h, "correct horse battery stapler") is False
    assert ph.hash("same") != ph.hash("same")  # salted


def test_verify_normalizes():
    ph = PasswordHasher(**FAST)
    assert ph.verify(ph.hash("ｐａｓｓ-phrase"), "pass-phrase")


@pytest.mark.parametrize("bad", ["", "garbage", "$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", None])
def test_verify_false_on_corrupt_hash(bad):
    assert PasswordHasher(**FAST).verify(bad, "whatever") is False


def test_verify_false_on_truncated_hash():
    ph = PasswordHasher(**FAST)
    h = ph.hash("pw-for-truncation")
    assert ph.verify(h[:-5], "pw-for-truncation") is False


def test_needs_rehash():
    ph = PasswordHasher(**FAST)
    h = ph.hash("some password")
    assert ph.needs_rehash(h) is False
    assert PasswordHasher(time_cost=2, memory_cost=8, parallelism=1).needs_rehash(h) is True
    assert PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).needs_rehash(h) is True
    assert ph.needs_rehash("garbage") is True


def test_dummy_verify_uses_same_parameters():
    ph = PasswordHasher(**FAST)
    assert ph.dummy_verify("anything") is None
    dummy = ph._dummy_hash
    assert dummy is not None and ph.needs_rehash(dummy) is False
    ph.dummy_verify("again")
    assert ph._dummy_hash == dummy  # made once
