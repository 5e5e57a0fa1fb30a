"""The "this wasn't me" page: GET asks and changes nothing, the form POST freezes; both
languages; strict headers; the token stays out of logs; no raw User-Agent in notices."""

from __future__ import annotations

import logging
import re
import threading
import urllib.request
from urllib.parse import parse_qs, urlsplit

from werkzeug.serving import make_server

from tests.support.flows import bearer, login_password

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/126.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.5 Mobile/15E148 Safari/604.1")


def login(client, user, device, user_agent=SAFARI_IPHONE, device_token=None):
    headers = {"X-Device-Id": device, "User-Agent": user_agent}
    if device_token:
        headers["X-Device-Token"] = device_token
    body = login_password(client, user, **headers).get_json()
    r = client.post("/v1/login/mfa", json={"mfa_token": body["mfa_token"], "method": "webauthn",
                                           "credential": user["key"].get(body["webauthn_options"])}, headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def report_token(text: str) -> str:
    url = re.search(r"https://app\.test/report\?token=\S+", text).group(0)
    return parse_qs(urlsplit(url).query)["token"][0]


def new_device_notice(client, user, twilio, smtp, user_agent=CHROME_WINDOWS):
    """Sign in from a first device, then from a new one: returns (tokens, sms, mail)."""
    first = login(client, user, "phone-1", device_token=user["device_token"])  # the registering device: known
    twilio.clear()
    smtp.clear()
    login(client, user, "attacker-pc", user_agent)
    sms = twilio.wait_for(lambda m: m["to"] == user["phone"] and "report?token=" in m["body"])
    mail = smtp.wait_for(lambda m: m["to"] == user["email"] and "report?token=" in m["body"])
    return first, sms, mail


def status(db):
    return db.execute("SELECT status FROM accounts").fetchone()[0]


def test_get_explains_and_changes_nothing_then_the_button_freezes(client, user, twilio, smtp, db):
    first, sms, mail = new_device_notice(client, user, twilio, smtp)
    token = report_token(mail["body"])
    assert report_token(sms["body"]) == token  # one link for both messages of the notice
    for _ in range(2):  # a mail scanner, then the owner
        page = client.get(f"/report?token={token}")
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert "Was this you?" in html and "from a device we had not seen before" in html
        assert "Chrome on Windows" in html and 'lang="en"' in html
        assert f'name="token" value="{token}"' in html and 'method="post"' in html
        assert "<script" not in html
    assert status(db) == "active"
    assert client.get("/v1/account", headers=bearer(first["access_token"])).status_code == 200

    done = client.post("/report", data={"token": token})
    assert done.status_code == 200
    html = done.get_data(as_text=True)
    assert "Your account is frozen" in html and "What to do next" in html
    assert status(db) == "frozen"
    assert client.get("/v1/account", headers=bearer(first["access_token"])).status_code == 401
    # used: both the page and the button now say the link is spent, and change nothing more
    assert client.get(f"/report?token={token}").status_code == 404
    again = client.post("/report", data={"token": token})
    assert again.status_code == 404 and "no longer valid" in again.get_data(as_text=True)


def test_headers_forbid_scripts_framing_caching_and_referrers(client, user, twilio, smtp):
    _, _, mail = new_device_notice(client, user, twilio, smtp)
    for resp in (client.get(f"/report?token={report_token(mail['body'])}"), client.get("/report?token=nope"),
                 client.get("/report")):
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/static/report.css").status_code == 200


def test_the_page_is_in_the_accounts_language(client, user, twilio, smtp, db):
    db.execute("UPDATE accounts SET locale = 'ja'")
    _, sms, mail = new_device_notice(client, user, twilio, smtp)
    assert sms["body"].startswith("新しい端末（Windows の Chrome）")
    token = report_token(mail["body"])
    html = client.get(f"/report?token={token}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'lang="ja"' in html and "これはあなたですか？" in html and "Windows の Chrome" in html
    assert "JST" in html
    done = client.post("/report", data={"token": token}).get_data(as_text=True)
    assert "アカウントを凍結しました" in done
    frozen = twilio.wait_for(lambda m: m["to"] == user["phone"] and "凍結" in m["body"])
    assert frozen["body"].startswith("ご報告により")


def test_an_unknown_link_answers_in_the_visitors_language(client):
    assert "no longer valid" in client.get("/report?token=x" * 3).get_data(as_text=True)
    ja = client.get("/report?token=unknown-token", headers={"Accept-Language": "ja,en;q=0.5"})
    assert ja.status_code == 404 and "このリンクは無効です" in ja.get_data(as_text=True)
    assert client.post("/report", data={"not_token": "x"}).status_code == 400
    assert client.post("/report", data={"token": "\x00" * 10}).status_code == 400
    assert client.post("/report", data={"token": "x" * 600}).status_code == 400
    assert client.post("/report", json={"token": "unknown-token"}).status_code == 415
    assert client.post("/report", data={"token": "unknown-token"}).status_code == 404


def test_notices_never_quote_the_user_agent(client, user, twilio, smtp):
    """An attacker's User-Agent is theirs to write; the owner's SMS must not carry its text."""
    evil = "Mozilla/5.0 (compatible; URGENT call +1-555-0100 or visit evil.example/unlock)"
    _, sms, mail = new_device_notice(client, user, twilio, smtp, user_agent=evil)
    for text in (sms["body"], mail["body"]):
        assert "evil" not in text and "URGENT" not in text and "555" not in text
        assert "an unknown browser on an unknown system" in text
    page = client.get(f"/report?token={report_token(mail['body'])}").get_data(as_text=True)
    assert "evil" not in page and "an unknown browser on an unknown system" in page


def test_the_token_never_reaches_the_access_log(app, caplog):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    secret = "SeCrEtToKeN" * 4
    try:
        with caplog.at_level(logging.DEBUG):
            for method, data in (("GET", None), ("POST", f"token={secret}".encode())):
                try:
                    urllib.request.urlopen(urllib.request.Request(
                        f"http://127.0.0.1:{server.port}/report?token={secret}", data=data, method=method))
                except urllib.error.HTTPError as e:
                    assert e.code == 404
    finally:
        server.shutdown()
    lines = [f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records]
    assert any(r.name == "authsvc.access" and "/report" in r.getMessage() for r in caplog.records), lines
    assert not any(secret in line for line in lines), lines


def test_the_example_page_keeps_only_the_device_token_in_storage_behind_a_strict_csp(make_app, settings):
    """Why the example may keep its device token in localStorage (README): no script runs but
    its own, and nothing else (access or refresh token) is stored there."""
    import re
    from pathlib import Path

    app = make_app(settings.replace(dev=True))
    page = app.test_client().get("/example/")
    assert page.status_code == 200
    csp = {d.split()[0]: d.split()[1:] for d in page.headers["Content-Security-Policy"].split(";") if d.strip()}
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    html = page.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script (it would not run anyway)
    js = (Path(__file__).resolve().parent.parent / "authsvc" / "example" / "app.js").read_text()
    assert re.findall(r"localStorage\.setItem\(([^,]+),", js) == ["DEVICE_TOKEN_KEY"]
    assert "sessionStorage" not in js and "document.cookie" not in js
