"""The message catalogue: every text translated, SMS within a segment, the code first, and each
account's messages and pages in its language."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from authsvc import i18n
from authsvc.services.platform import messages
from tests.support.flows import STRONG_PASSWORD, bearer, enroll_totp, new_email, new_phone
from tests.support.messages import extract_code

ROOT = Path(__file__).resolve().parent.parent
OTHER_LOCALES = [loc for loc in i18n.LOCALES if loc != i18n.SOURCE_LOCALE]
_PLACEHOLDER = re.compile(r"\{(\w+)\}|%\((\w+)\)s")
# GSM 03.38 basic alphabet (plus the extension table): what fits 160 characters in one SMS.
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà") | set("^{}\\[~]|€")
LINK = "https://wallet.example.co.jp/report?token=" + "A" * 43  # a real report link's length
SAMPLE = {"code": "123456", "minutes": 10, "failures": 10, "link": LINK, "ip": "203.0.113.77", "time": "now"}


def source_msgids() -> set[str]:
    """Every text the code and templates mark for translation, as `pybabel extract` finds them
    (the same babel.cfg, the same keywords)."""
    with (ROOT / "babel.cfg").open() as fp:
        method_map, options_map = parse_mapping_cfg(fp)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    return {message if isinstance(message, str) else message[0]
            for _, _, message, _, _ in extract_from_dir(str(ROOT / "authsvc"), method_map, options_map, keywords)}


def catalogue(locale: str):
    with (i18n.LOCALES_DIR / locale / "LC_MESSAGES" / "authsvc.po").open("rb") as fp:
        return read_po(fp, locale=locale)


def placeholders(text: str) -> set[str]:
    return {a or b for a, b in _PLACEHOLDER.findall(text)}


def test_the_extraction_finds_the_texts():
    ids = source_msgids()
    assert set(messages.all_msgids()) <= ids
    assert "Was this you?" in ids  # the report page template
    assert len(ids) > 60


@pytest.mark.parametrize("locale", OTHER_LOCALES)
def test_every_text_is_translated(locale):
    po = catalogue(locale)
    problems = []
    for msgid in sorted(source_msgids()):
        entry = po.get(msgid)
        if entry is None or not entry.string:
            problems.append(f"no translation: {msgid!r}")
        elif entry.fuzzy:
            problems.append(f"fuzzy translation: {msgid!r}")
        elif placeholders(entry.string) != placeholders(msgid):
            problems.append(f"placeholders differ: {msgid!r} -> {entry.string!r}")
    stale = sorted(m.id for m in po if m.id and m.id not in source_msgids())
    assert not problems, "\n".join(problems)
    assert not stale, f"{locale}.po has texts the code no longer uses: {stale}"


@pytest.mark.parametrize("locale", OTHER_LOCALES)
def test_compiled_catalogue_matches_its_source(locale):
    """The committed .mo is what `pybabel compile` makes from the .po (nobody forgot to compile)."""
    with (i18n.LOCALES_DIR / locale / "LC_MESSAGES" / "authsvc.mo").open("rb") as fp:
        compiled = gettext.GNUTranslations(fp)._catalog  # type: ignore[attr-defined]
    expected = {m.id: m.string for m in catalogue(locale) if m.id and m.string and not m.fuzzy}
    assert {k: v for k, v in compiled.items() if k} == expected


def test_a_missing_translation_is_noticed(tmp_path):
    """The check above can fail: a catalogue without one text is reported."""
    po = catalogue("ja")
    msgid = messages.SMS["login_code"]
    po.delete(msgid)
    assert po.get(msgid) is None and msgid in source_msgids()


def _gsm7_length(text: str) -> int:
    return sum(2 if ch in "^{}\\[~]|€" else 1 for ch in text)


@pytest.mark.parametrize("locale", i18n.LOCALES)
@pytest.mark.parametrize("key", sorted(messages.SMS))
def test_sms_fit_one_segment_and_put_the_code_first(locale, key):
    values = {**SAMPLE, "device": messages.device_label(locale, "Samsung Internet", "HarmonyOS"),
              "factor": max((messages.factor_name(locale, k) for k in messages.FACTOR_NAMES), key=len)}
    body = messages.sms(locale, key, **values)
    if all(ch in _GSM7 for ch in body):
        assert _gsm7_length(body) <= 160, (len(body), body)
    else:
        assert locale != "en", f"English SMS must stay in the GSM-7 alphabet: {body!r}"
        limit = 70 if "{link}" not in messages.SMS[key] else 2 * 67  # UCS-2; a link needs two parts
        assert len(body) <= limit, (len(body), body)
    if "{code}" in messages.SMS[key]:
        assert body.startswith("123456") and extract_code(body) == "123456"
    else:
        assert not re.search(r"(?<![0-9])[0-9]{6}(?![0-9])", body.replace(LINK, ""))


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_emails_with_a_code_put_it_first(locale):
    for key, (_, body_id) in messages.EMAIL.items():
        if "{code}" in body_id:
            subject, body = messages.email(locale, key, **SAMPLE)
            assert body.startswith("123456") and extract_code(subject + body) == "123456"


def test_japanese_texts_are_japanese():
    assert messages.sms("ja", "login_code", code="123456", minutes=5) == "123456 はサインイン用のコードです。5分間有効です。"
    assert messages.device_label("ja", "Chrome", "Windows") == "Windows の Chrome"
    assert messages.device_label("en", None, "iOS") == "an unknown browser on iOS"


# --------------------------------------------------------------------------- per account, over HTTP
def _register(client, twilio, smtp, **kwargs):
    headers = kwargs.pop("headers", {})
    email, phone = new_email(), new_phone()
    r = client.post("/v1/registrations", json={"email": email, "phone": phone, "password": STRONG_PASSWORD,
                                                **kwargs}, headers=headers)
    assert r.status_code == 202, r.get_json()
    sms = twilio.wait_for(lambda m: m["to"] == phone)
    mail = smtp.wait_for(lambda m: m["to"] == email)
    verify = client.post(f"/v1/registrations/{r.get_json()['registration_id']}/verify",
                         json={"phone_code": extract_code(sms["body"]), "email_code": extract_code(mail["body"])})
    assert verify.status_code == 201
    return sms, mail, {**verify.get_json(), "email": email, "phone": phone}


def test_registration_locale_chooses_the_language(client, twilio, smtp, db):
    sms, mail, account = _register(client, twilio, smtp, locale="ja")
    assert "認証コード" in sms["body"] and "確認" in mail["subject"]
    assert db.execute("SELECT locale FROM accounts WHERE id = %s", (account["account_id"],)).fetchone()[0] == "ja"


def test_accept_language_is_the_fallback(client, twilio, smtp):
    sms, _, _ = _register(client, twilio, smtp, headers={"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"})
    assert "認証コード" in sms["body"]
    sms, _, _ = _register(client, twilio, smtp, headers={"Accept-Language": "fr-FR, en;q=0.8"})
    assert sms["body"].endswith("It expires in 10 minutes.")
    # the explicit locale wins over the header
    sms, _, _ = _register(client, twilio, smtp, locale="en", headers={"Accept-Language": "ja"})
    assert "verification code" in sms["body"]


def test_default_locale_applies_without_locale_or_match(make_app, settings, twilio, smtp):
    client = make_app(settings.replace(default_locale="ja")).test_client()
    sms, _, _ = _register(client, twilio, smtp, headers={"Accept-Language": "de"})
    assert "認証コード" in sms["body"]


def test_unknown_locale_is_a_400(client):
    r = client.post("/v1/registrations", json={"email": new_email(), "phone": new_phone(),
                                               "password": STRONG_PASSWORD, "locale": "fr"})
    assert r.status_code == 400 and r.get_json()["errors"][0]["field"] == "locale"


def test_patch_account_changes_the_language_of_later_messages(client, twilio, smtp):
    _, _, account = _register(client, twilio, smtp)
    factor = enroll_totp(client, account["enrollment_token"])

    def sign_in(device: str, method: str, code: str):
        headers = {"X-Device-Id": device, "User-Agent": FIREFOX_MAC}
        login = client.post("/v1/login", json={"email": account["email"], "password": STRONG_PASSWORD},
                            headers=headers).get_json()
        r = client.post("/v1/login/mfa", json={"mfa_token": login["mfa_token"], "method": method, "code": code},
                        headers=headers)
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    tokens = sign_in("phone-1", "recovery_code", factor["recovery_codes"][1])  # (the TOTP step is spent)
    # that sign-in's own new-device notice (English) leaves through the outbox in the
    # background: let it arrive before the messages under test are collected
    twilio.wait_for(lambda m: m["to"] == account["phone"] and m["body"].startswith("New sign-in"))
    assert client.get("/v1/account", headers=bearer(tokens["access_token"])).get_json()["locale"] == "en"
    for bad in ({"locale": "fr"}, {"locale": 1}, {"locale": "ja", "is_admin": True}):
        r = client.patch("/v1/account", json=bad, headers=bearer(tokens["access_token"]))
        assert r.status_code == 400, bad
    assert client.patch("/v1/account", json={"locale": "ja"}).status_code == 401
    r = client.patch("/v1/account", json={"locale": "ja"}, headers=bearer(account["enrollment_token"]))
    assert r.status_code in (401, 403)  # an enrollment token is not a session
    r = client.patch("/v1/account", json={"locale": "ja"}, headers=bearer(tokens["access_token"]))
    assert r.status_code == 200 and r.get_json()["locale"] == "ja"
    twilio.clear()
    sign_in("laptop-2", "recovery_code", factor["recovery_codes"][0])
    sms = twilio.wait_for(lambda m: m["to"] == account["phone"])
    assert sms["body"].startswith("新しい端末（macOS の Firefox）からサインイン。")
    mail = smtp.wait_for(lambda m: m["to"] == account["email"] and m["subject"] == "アカウントへの新しいサインイン")
    assert "JST" in mail["body"] and "macOS の Firefox" in mail["body"]


FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 Firefox/128.0"
