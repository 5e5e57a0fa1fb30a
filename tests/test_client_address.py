"""The client address behind trusted proxies that write ip:port, [v6]:port or RFC 7239
Forwarded; what still cannot be parsed is counted and never lumps every client together."""

from __future__ import annotations

import ipaddress

import pytest

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


def test_unparseable_hops_get_distinct_buckets_not_the_proxys():
    a = resolve_client_address("10.0.0.1", ["_hidden-a"], PROXY)
    b = resolve_client_address("10.0.0.1", ["_hidden-b"], PROXY)
    c = resolve_client_address("10.0.0.1", ["for=unknown"], PROXY, forwarded=True)
    assert a.problem == b.problem == c.problem == "unparseable"
    assert len({a.ip, b.ip, c.ip, "10.0.0.1"}) == 4
    assert a.ip == resolve_client_address("10.0.0.1", ["_hidden-a"], PROXY).ip  # stable
    for ip in (a.ip, b.ip, c.ip):
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("fd00::/8")
    # distinct hops also land in distinct /48 networks (network-level budgets)
    assert ipaddress.ip_network(f"{a.ip}/48", strict=False) != ipaddress.ip_network(f"{b.ip}/48", strict=False)
    # a proxy that sends nothing: counted as missing
    assert resolve_client_address("10.0.0.1", [], PROXY).problem == "missing"


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
    assert first != second and "10.0.0.1" not in (first, second)
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
