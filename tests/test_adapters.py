"""Adapters against real local servers: the real twilio client -> FakeTwilio, smtplib -> SmtpSink."""

from __future__ import annotations

import logging

import pytest

from authsvc.adapters.email import ConsoleEmail, SmtpEmail, build_email_sender
from authsvc.adapters.sms import ConsoleSms, TwilioSms, build_sms_sender
from authsvc.config import Settings
from authsvc.errors import ConfigError, DeliveryError
from tests.support.fake_twilio import FakeTwilio
from tests.support.messages import extract_code
from tests.support.smtp_sink import SmtpSink, free_port

FROM_NUMBER = "+15005550006"
TO_NUMBER = "+15551234567"
EMAIL_FROM = "authsvc <no-reply@example.test>"


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def smtp_sink():
    with SmtpSink() as sink:
        yield sink


def _sms(fake, *, token=None) -> TwilioSms:
    return TwilioSms(fake.account_sid, token or fake.auth_token, FROM_NUMBER, api_base=fake.base_url, timeout=5)


# --- SMS -----------------------------------------------------------------------------------
def test_twilio_sms_roundtrip(fake_twilio, caplog):
    caplog.set_level(logging.DEBUG)
    sid = _sms(fake_twilio).send(TO_NUMBER, "Your code is 123456")

    message = fake_twilio.wait_for(lambda m: m["to"] == TO_NUMBER)
    assert message == {
        "to": TO_NUMBER,
        "from_": FROM_NUMBER,
        "body": "Your code is 123456",
        "account_sid": fake_twilio.account_sid,
        "sid": sid,
    }
    assert sid.startswith("SM") and len(sid) == 34
    assert "123456" not in caplog.text  # the body is never logged (twilio's own logger included)


def test_twilio_wrong_token_is_delivery_error(fake_twilio):
    with pytest.raises(DeliveryError) as info:
        _sms(fake_twilio, token="f" * 32).send(TO_NUMBER, "Your code is 123456")
    assert "401" in info.value.detail and "20003" in info.value.detail
    assert "123456" not in info.value.detail
    assert fake_twilio.messages == []


def test_twilio_outage_is_delivery_error_then_recovers(fake_twilio):
    fake_twilio.fail_next(2, status=503)
    sms = _sms(fake_twilio)
    for _ in range(2):
        with pytest.raises(DeliveryError) as info:
            sms.send(TO_NUMBER, "Your code is 123456")
        assert "503" in info.value.detail and "123456" not in info.value.detail
    assert fake_twilio.messages == []
    sms.send(TO_NUMBER, "Your code is 654321")
    assert extract_code(fake_twilio.wait_for()["body"]) == "654321"


def test_twilio_unreachable_is_delivery_error():
    sms = TwilioSms("AC" + "1" * 32, "t" * 32, FROM_NUMBER, api_base=f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(DeliveryError) as info:
        sms.send(TO_NUMBER, "Your code is 123456")
    assert "123456" not in info.value.detail


def test_console_sms_prints(capsys):
    message_id = ConsoleSms().send(TO_NUMBER, "Your code is 123456")
    assert capsys.readouterr().out == f"SMS to {TO_NUMBER}: Your code is 123456\n"
    assert message_id


def test_build_sms_sender(fake_twilio):
    twilio = Settings(
        sms_provider="twilio",
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=fake_twilio.auth_token,
        twilio_from=FROM_NUMBER,
        twilio_api_base=fake_twilio.base_url,
    )
    build_sms_sender(twilio).send(TO_NUMBER, "Your code is 111111")
    assert fake_twilio.wait_for()["body"] == "Your code is 111111"
    assert isinstance(build_sms_sender(Settings(dev=True, sms_provider="console")), ConsoleSms)
    with pytest.raises(ConfigError):
        build_sms_sender(Settings(dev=False, sms_provider="console"))
    with pytest.raises(ConfigError):
        build_sms_sender(Settings(sms_provider="twilio"))  # no credentials


# --- email ---------------------------------------------------------------------------------
def test_smtp_email_roundtrip(smtp_sink):
    message_id = SmtpEmail(smtp_sink.url, EMAIL_FROM, timeout=5).send(
        "Ann <ann@example.test>", "Your sign-in code", "Your code is 123456\nIt expires in 10 minutes."
    )

    message = smtp_sink.wait_for(lambda m: m["rcpt_tos"] == ["ann@example.test"])
    assert message["subject"] == "Your sign-in code"
    assert message["from_"] == EMAIL_FROM
    assert message["to"] == "Ann <ann@example.test>"
    assert message["mail_from"] == "no-reply@example.test"
    assert message["message_id"] == message_id
    assert message_id.startswith("<") and message_id.endswith("@example.test>")
    assert extract_code(message["body"]) == "123456"


@pytest.mark.parametrize(
    "to, subject",
    [
        ("ann@example.test\r\nBcc: eve@example.test", "Your code"),
        ("ann@example.test", "Your code\nBcc: eve@example.test"),
        ("ann@example.test\rX: y", "Your code"),
        ("ann@example.test, eve@example.test", "Your code"),  # one recipient only
    ],
)
def test_header_injection_rejected(smtp_sink, to, subject):
    with pytest.raises(DeliveryError):
        SmtpEmail(smtp_sink.url, EMAIL_FROM).send(to, subject, "Your code is 123456")
    with pytest.raises(DeliveryError):
        ConsoleEmail().send(to, subject, "Your code is 123456")
    assert smtp_sink.messages == []


def test_smtp_unreachable_is_delivery_error():
    with pytest.raises(DeliveryError) as info:
        SmtpEmail(f"smtp://127.0.0.1:{free_port()}", EMAIL_FROM, timeout=2).send(
            "ann@example.test", "Your code", "Your code is 123456"
        )
    assert "123456" not in info.value.detail


def test_starttls_required(smtp_sink):
    url = f"smtp+starttls://user:pw@127.0.0.1:{smtp_sink.port}"  # the sink offers no STARTTLS
    with pytest.raises(DeliveryError, match="STARTTLS"):
        SmtpEmail(url, EMAIL_FROM, timeout=5).send("ann@example.test", "Your code", "Your code is 123456")
    assert smtp_sink.messages == []


def test_smtp_url_parsing():
    email = SmtpEmail("smtps://us%40er:p%3Ass%2Fw@mail.example.test", EMAIL_FROM)
    assert (email._user, email._password, email._port) == ("us@er", "p:ss/w", 465)
    assert SmtpEmail("smtp+starttls://u:p@mail.example.test", EMAIL_FROM)._port == 587
    for bad in ("http://mail.example.test", "smtp://", "smtp://u:p@mail.example.test", "smtp://h:notaport"):
        with pytest.raises(ConfigError):
            SmtpEmail(bad, EMAIL_FROM)
    with pytest.raises(ConfigError):
        SmtpEmail("smtp://mail.example.test", "a@b.test\r\nBcc: eve@example.test")


def test_console_email_and_builder(smtp_sink, capsys):
    ConsoleEmail().send("ann@example.test", "Your code", "Your code is 123456")
    assert capsys.readouterr().out == "Email to ann@example.test: Your code\nYour code is 123456\n"
    assert isinstance(build_email_sender(Settings(dev=True)), ConsoleEmail)
    with pytest.raises(ConfigError):
        build_email_sender(Settings(dev=False))
    build_email_sender(Settings(smtp_url=smtp_sink.url, email_from=EMAIL_FROM)).send("b@example.test", "S", "B")
    assert smtp_sink.wait_for()["rcpt_tos"] == ["b@example.test"]


# --- the code contract ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, code",
    [
        ("Your code is 123456", "123456"),
        ("1234567 then 654321", "654321"),
        ("123456", "123456"),
        ("code:000042.", "000042"),
        ("12345 a 12345678 b 987654 c 111111", "987654"),
        ("Your authsvc code: 246810\n\nDo not share it.", "246810"),
    ],
)
def test_extract_code(text, code):
    assert extract_code(text) == code


@pytest.mark.parametrize("text", ["", "no code", "12345", "1234567", "١٢٣٤٥٦"])
def test_extract_code_none(text):
    with pytest.raises(AssertionError):
        extract_code(text)
