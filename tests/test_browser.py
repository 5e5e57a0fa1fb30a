"""The example payment page and the report page in a real browser (headless Chromium).

Drives ``/example/`` (``--dev`` only) through the whole flow with Selenium's virtual WebAuthn
authenticator: register, verify both codes, add a passkey, sign in with it, add TOTP under
step-up, confirm a payment under step-up and show what the backend's redemption returned.
The payment is confirmed with Secure Payment Confirmation: the passkey is enrolled with the
WebAuthn ``payment`` extension, Chromium's SPC runs with ``--enable-features=
SecurePaymentConfirmationBrowser`` (Debian's Chromium on Linux reports SPC
``unavailable-feature-not-enabled`` without it) and WebDriver's "Set SPC Transaction Mode"
(``autoAccept``) stands in for the user pressing "Verify" in the browser's payment sheet; the
server checks the ``payment.get`` client data. A second payment with SPC hidden from the page
takes the WebAuthn fallback.
Then opens the "this wasn't me" page of a new-device notice in English and in Japanese and
presses its button. Screenshots go to ``AUTHSVC_SCREENSHOT_DIR`` (the README's come from
``AUTHSVC_SCREENSHOT_DIR=docs/screenshots bash .ci/run tests/test_browser.py``).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when it can);
skipped, saying why, only when no browser can be had.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pyotp
import pytest
from werkzeug.serving import make_server

from authsvc.app import create_app
from authsvc.config import Settings
from tests.conftest import MIGRATIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver on PATH (apt-get install chromium chromium-driver; .ci/run does it as root)",
)


@pytest.fixture
def server(db_url):
    """The app with --dev settings, served over HTTP on a free port of 127.0.0.1."""
    holder: dict = {}
    srv = make_server("127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True)
    origin = f"http://localhost:{srv.port}"
    settings = Settings(
        dev=True, database_url=db_url, migrations_dir=MIGRATIONS, issuer=origin, audience="payments",
        rp_id="localhost", rp_name="Example Pay", origins=(origin,), public_url=origin,
        report_url=origin + "/report?token={token}", encryption_keys=(("t1", secrets.token_bytes(32)),),
        sms_provider="console", smtp_url=None, rate_limits_enabled=False,
    )
    holder["app"] = app = create_app(settings)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield origin
    srv.shutdown()
    app.extensions["authsvc"].close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="authsvc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1500",
                 "--lang=en-US", "--enable-features=SecurePaymentConfirmationBrowser"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    # WebDriver extension of the SPC specification: the payment sheet accepts by itself.
    driver.command_executor.add_command("setSPCTransactionMode", "POST",
                                        "/session/$sessionId/secure-payment-confirmation/set-mode")
    driver.execute("setSPCTransactionMode", {"mode": "autoAccept"})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str, element=None) -> None:
    folder = Path(os.environ.get("AUTHSVC_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "authsvc-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / f"{name}.png")
    element.screenshot(path) if element is not None else driver.save_screenshot(path)


def call(origin: str, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(origin + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def sign_in_elsewhere(origin: str, email: str, password: str, recovery_code: str, device: str) -> dict:
    """A sign-in from another device (over the API, with a recovery code): a new-device notice."""
    headers = {"X-Device-Id": device, "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                                     "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"}
    status, login = call(origin, "POST", "/v1/login", {"email": email, "password": password}, headers)
    assert status == 200, login
    status, tokens = call(origin, "POST", "/v1/login/mfa", {"mfa_token": login["mfa_token"], "method": "recovery_code",
                                                             "code": recovery_code}, headers)
    assert status == 200, tokens
    return tokens


def report_link(origin: str, email: str, seen: set[str]) -> str:
    """The link of the newest notice to ``email`` not seen yet (waits for the outbox to deliver)."""
    deadline = time.monotonic() + 15
    while True:
        _, messages = call(origin, "GET", "/example/dev/outbox")
        for m in messages:  # newest first
            link = re.search(r"http://\S+/report\?token=\S+", m["body"]) if m["to"] == email else None
            if link and link.group(0) not in seen:
                seen.add(link.group(0))
                return link.group(0)
        assert time.monotonic() < deadline, f"no new report link for {email}: {messages}"
        time.sleep(0.2)


def test_example_payment_flow_and_report_page_in_chromium(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.virtual_authenticator import Protocol, Transport, VirtualAuthenticatorOptions
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    el = lambda id_: browser.find_element(By.ID, id_)  # noqa: E731

    def click(id_: str, then_done: str | None = None, then_visible: str | None = None) -> None:
        el(id_).click()
        if then_done:
            wait.until(lambda d: "done" in el(then_done).get_attribute("class") or el("error").is_displayed())
        if then_visible:
            wait.until(lambda d: el(then_visible).is_displayed() or el("error").is_displayed())
        assert not el("error").is_displayed(), el("error").text

    browser.get(server + "/example/")
    browser.add_virtual_authenticator(VirtualAuthenticatorOptions(
        protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
        has_user_verification=True, is_user_verified=True, is_user_consenting=True,
    ))
    email = el("email").get_attribute("value")
    password = el("password").get_attribute("value")

    click("register", then_done="s-register")
    el("peek").click()
    wait.until(lambda d: len(el("phone-code").get_attribute("value")) == 6
               and len(el("email-code").get_attribute("value")) == 6)
    click("verify", then_done="s-verify")
    click("add-passkey", then_done="s-passkey")
    recovery_codes = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    assert len(recovery_codes) == 10
    click("login", then_done="s-login")
    click("totp-begin", then_visible="totp-box")
    el("totp-code").send_keys(pyotp.TOTP(el("totp-secret").text).now())
    click("totp-confirm", then_done="s-totp")

    el("amount").clear()
    el("amount").send_keys("1200")
    el("payee").clear()
    el("payee").send_keys("Blue Bottle Coffee Kiyosumi")
    click("pay-passkey", then_done="s-pay")
    redeemed = json.loads(el("redeemed").text)
    assert redeemed["action"] == "payment.authorize"
    assert redeemed["transaction"] == {"amount": "1200", "currency": "JPY", "payee": "Blue Bottle Coffee Kiyosumi"}
    assert redeemed["acr"] == "aal3" and "hwk" in redeemed["amr"]
    assert "Payment confirmed" in el("receipt-title").text and "1,200" in el("receipt-title").text
    availability = browser.execute_async_script(
        "PaymentRequest.securePaymentConfirmationAvailability().then(arguments[arguments.length - 1])")
    assert availability == "available", f"Chromium's SPC: {availability}"
    assert el("pay-method").get_attribute("data-method") == "spc", el("pay-method").text
    browser.execute_script("document.getElementById('s-pay').scrollIntoView()")
    shot(browser, "example-payment", el("s-pay"))

    # where the browser has no SPC, the page falls back to the passkey (a webauthn.get assertion)
    browser.execute_script("delete PaymentRequest.securePaymentConfirmationAvailability;"
                           "PaymentRequest.securePaymentConfirmationAvailability = undefined;")
    el("amount").clear()
    el("amount").send_keys("980")
    browser.execute_script("document.getElementById('s-pay').classList.remove('done')")
    click("pay-passkey", then_done="s-pay")
    assert el("pay-method").get_attribute("data-method") == "webauthn", el("pay-method").text
    assert json.loads(el("redeemed").text)["transaction"]["amount"] == "980"

    # ------------------------------------------------ the report page of a new-device notice
    seen: set[str] = set()
    tokens = sign_in_elsewhere(server, email, password, recovery_codes[0], "attacker-pc")
    browser.get(report_link(server, email, seen))
    assert "Was this you?" in browser.page_source and "Chrome on Windows" in browser.page_source
    shot(browser, "report-en", browser.find_element(By.TAG_NAME, "main"))

    status, account = call(server, "PATCH", "/v1/account", {"locale": "ja"},
                           {"Authorization": f"Bearer {tokens['access_token']}"})
    assert status == 200 and account["locale"] == "ja"
    sign_in_elsewhere(server, email, password, recovery_codes[1], "attacker-phone")
    browser.get(report_link(server, email, seen))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ja"
    assert "これはあなたですか？" in browser.page_source and "Windows の Chrome" in browser.page_source
    shot(browser, "report-ja", browser.find_element(By.TAG_NAME, "main"))
    browser.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "アカウントを凍結しました"))
    shot(browser, "report-ja-frozen", browser.find_element(By.TAG_NAME, "main"))
    status, problem = call(server, "GET", "/v1/account", None, {"Authorization": f"Bearer {tokens['access_token']}"})
    assert status == 401  # every session was revoked by the button
