"""The client address behind trusted proxies that write ip:port, [v6]:port or RFC 7239
Forwarded; what still cannot be parsed is counted and never lumps every client together."""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import threading
import uuid

import pytest
from werkzeug.serving import make_server

from authsvc.api.context import client_ip, resolve_client_address
from tests.support.metrics import metric

PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    "hop, expected",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
    ],
)
def test_x_forwarded_for_hop_forms(hop, expected):
    assert resolve_client_address("10.0.0.1", [f"198.51.100.1, {hop}"], PROXY).ip == expected


@pytest.mark.parametrize(
    "header, expected",
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('For="192.0.2.61:8080"', "192.0.2.61"),
        ("for=198.51.100.1, for=192.0.2.43;proto=https, for=10.1.2.3", "192.0.2.43"),  # skips the trusted hop
    ],
)
def test_rfc7239_forwarded(header, expected):
    assert resolve_client_address("10.0.0.1", [header], PROXY, forwarded=True).ip == expected


def test_untrusted_peer_is_the_client_whatever_it_sends():
    assert resolve_client_address("198.51.100.9", ["203.0.113.7"], PROXY).ip == "198.51.100.9"
    assert resolve_client_address("198.51.100.9", ["for=203.0.113.7"], PROXY, forwarded=True).ip == "198.51.100.9"


def test_unparseable_hops_share_the_proxys_bucket_never_a_fresh_one():
    a = resolve_client_address("10.0.0.1", ["_hidden-a"], PROXY)
    b = resolve_client_address("10.0.0.1", ["_hidden-b"], PROXY)
    c = resolve_client_address("10.0.0.1", ["for=unknown"], PROXY, forwarded=True)
    assert a.problem == b.problem == c.problem == "unparseable"
    # whatever the text, the client is the proxy that wrote it: the text mints no bucket
    assert a.ip == b.ip == c.ip == "10.0.0.1"
    assert a.raw_hop == "_hidden-a"
    # behind a chain of trusted proxies: the nearest trusted hop that wrote the bad one
    assert resolve_client_address("10.0.0.1", ["garbage, 10.0.0.2"], PROXY).ip == "10.0.0.2"
    # a proxy that sends nothing: counted as missing
    assert resolve_client_address("10.0.0.1", [], PROXY).problem == "missing"


@pytest.mark.parametrize(
    "client_sent",
    ['"x', '"x-%d', 'for="x-%d', '"[2001:db8::1', '1.2.3.4, "x-%d', '\\"x-%d', '"', '"a", "b'],
)
def test_a_clients_quote_cannot_swallow_the_proxys_own_hop(client_sent):
    """The proxy appends ``, <peer>`` to whatever the client sent (nginx, ALB, Envoy): the
    appended hop is the client, whatever quotes precede it."""
    seen = set()
    for n in range(5):
        text = client_sent.replace("%d", str(n))
        xff = resolve_client_address("10.0.0.1", [f"{text}, 203.0.113.7"], PROXY)
        assert (xff.ip, xff.problem) == ("203.0.113.7", None), text
        fwd = resolve_client_address("10.0.0.1", [f"for={text}, for=203.0.113.7"], PROXY, forwarded=True)
        assert (fwd.ip, fwd.problem) == ("203.0.113.7", None), text
        # the same when the client's value is its own header line and the proxy adds another
        two = resolve_client_address("10.0.0.1", [text, "203.0.113.7"], PROXY)
        assert two.ip == "203.0.113.7"
        seen.add(xff.ip)
    assert seen == {"203.0.113.7"}
    # an unterminated quote inside a Forwarded element cannot hide the next parameter either
    assert resolve_client_address("10.0.0.1", ['by="x;for=203.0.113.8'], PROXY, forwarded=True).ip == "203.0.113.8"


def _metric(app, reason: str) -> float:
    return metric(app, "authsvc_client_address_problems_total", reason=reason)


def test_requests_through_a_trusted_proxy(make_app, settings, caplog):
    app = make_app(settings.replace(trusted_proxies=PROXY))
    peer = {"REMOTE_ADDR": "10.0.0.1"}
    with app.test_request_context("/", headers={"X-Forwarded-For": "203.0.113.7:51234"}, environ_base=peer):
        assert client_ip() == "203.0.113.7"
    with app.test_request_context("/", headers={"X-Forwarded-For": "[2001:db8::5]:443"}, environ_base=peer):
        assert client_ip() == "2001:db8::5"
    assert _metric(app, "unparseable") == 0
    with app.test_request_context("/", headers={"X-Forwarded-For": "garbage<script>"}, environ_base=peer):
        first = client_ip()
    with app.test_request_context("/", headers={"X-Forwarded-For": "other-garbage"}, environ_base=peer):
        second = client_ip()
    assert first == second == "10.0.0.1"  # the proxy's own bucket, whatever the text
    assert _metric(app, "unparseable") == 2
    assert any("unparseable client address" in r.getMessage() for r in caplog.records)

    fwd = make_app(settings.replace(trusted_proxies=PROXY, proxy_header="forwarded"))
    with fwd.test_request_context("/", headers={"Forwarded": 'for="[2001:db8::7]:1"', "X-Forwarded-For": "1.2.3.4"},
                                  environ_base=peer):
        assert client_ip() == "2001:db8::7"


def test_proxy_header_setting(tmp_path):
    import base64

    from authsvc import errors
    from authsvc.config import Settings

    base = {"AUTHSVC_ENCRYPTION_KEY": "k1:" + base64.b64encode(bytes(range(32))).decode(),
            "AUTHSVC_DATA_DIR": str(tmp_path)}
    assert Settings.from_env({**base, "AUTHSVC_PROXY_HEADER": "Forwarded"}, dev=True).proxy_header == "forwarded"
    with pytest.raises(errors.ConfigError, match="AUTHSVC_PROXY_HEADER"):
        Settings.from_env({**base, "AUTHSVC_PROXY_HEADER": "X-Real-IP"}, dev=True)


# ------------------------------------------------------------------ over HTTP, PostgreSQL + Redis
LOOPBACK_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)  # the test's own connections stand in for the proxy


def _failed_sign_ins(post, n: int) -> list[int]:
    """``n`` wrong passwords (each for a different email), every one with a fresh unterminated
    quote before the hop the proxy appended (``, 203.0.113.50``)."""
    statuses = []
    for i in range(n):
        statuses.append(post("/v1/login", {"email": f"quote-{i}@example.com", "password": "wrong password 1"},
                             {"X-Forwarded-For": f'"x-{i}-{uuid.uuid4().hex}, 203.0.113.50'}))
    return statuses


def test_quote_in_x_forwarded_for_gets_no_fresh_bucket_on_a_running_server(make_app, redis_settings, caplog):
    """A real server on a socket: 60 failed sign-ins and 12 registrations from one address,
    each with its own crafted X-Forwarded-For, meet the per-client limits; the access log names
    the address the proxy appended."""
    app = make_app(redis_settings.replace(trusted_proxies=LOOPBACK_PROXY))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def post(path: str, body: dict, headers: dict) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("POST", path, body=json.dumps(body),
                         headers={"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    try:
        with caplog.at_level(logging.INFO, logger="authsvc.access"):
            logins = _failed_sign_ins(post, 60)
            registrations = [
                post("/v1/registrations", {"email": f"quote-reg-{i}@example.com", "phone": "+819012345678",
                                           "password": "correct horse battery staple 42"},
                     {"X-Forwarded-For": f'"r-{i}, 203.0.113.51'})  # another client than the logins
                for i in range(12)
            ]
    finally:
        server.shutdown()
    assert logins[:20] == [401] * 20 and set(logins[20:]) == {429}, logins
    assert registrations[:5] == [202] * 5 and set(registrations[5:]) == {429}, registrations
    clients = {r.fields["client"] for r in caplog.records if r.name == "authsvc.access"}
    assert clients == {"203.0.113.50", "203.0.113.51"}, clients


def test_quote_in_forwarded_gets_no_fresh_bucket(make_app, redis_settings, caplog):
    app = make_app(redis_settings.replace(trusted_proxies=LOOPBACK_PROXY, proxy_header="forwarded"))
    client = app.test_client()

    def post(path: str, body: dict, headers: dict) -> int:
        xff = headers["X-Forwarded-For"]
        crafted, _, appended = xff.rpartition(", ")
        return client.post(path, json=body, headers={"Forwarded": f"for={crafted};proto=https, for={appended}"}).status_code

    with caplog.at_level(logging.INFO, logger="authsvc.access"):
        logins = _failed_sign_ins(post, 30)
    assert logins[:20] == [401] * 20 and set(logins[20:]) == {429}, logins
    assert {r.fields["client"] for r in caplog.records if r.name == "authsvc.access"} == {"203.0.113.50"}
    assert _metric(app, "unparseable") == 0
