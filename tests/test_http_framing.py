"""authsvc.http_framing: where a request ends, fed one byte at a time as a slow client sends it
(the HTTP behaviour itself is tested over HTTP in tests/faults/test_slow_clients.py)."""

from __future__ import annotations

import pytest

from authsvc.http_framing import Refused, RequestFramer

HEAD = b"POST /v1/login?x=secret HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


def _framer() -> RequestFramer:
    return RequestFramer(max_head=1024, max_body=64)


def _feed_bytewise(raw: bytes) -> tuple[RequestFramer, int]:
    """The framer after ``raw`` one byte at a time, and how many bytes made it complete."""
    framer = _framer()
    for i in range(len(raw)):
        if framer.feed(raw[i:i + 1]):
            return framer, i + 1
    return framer, -1


@pytest.mark.parametrize("raw", [
    HEAD + b"Content-Length: 2\r\n\r\n{}",
    HEAD + b"Content-Length: 0\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    b"\r\n" + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1;a=b;c=\"d e\"\r\n}\r\n0\r\n\r\n",
    HEAD + b"transfer-encoding: gzip, Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
    # heads gunicorn refuses without reading a body: complete with the head
    HEAD + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n",
    HEAD + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    HEAD + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
    HEAD + b"Content-Length: +2\r\n\r\n",
])
def test_complete_exactly_at_the_end_of_the_request(raw):
    framer, at = _feed_bytewise(raw + b"GET /next HTTP/1.1\r\n")
    assert at == len(raw)
    assert framer.end == len(raw)


def test_pipelined_bytes_after_the_request_are_kept_and_the_path_has_no_query():
    framer = _framer()
    raw = HEAD + b"Content-Length: 2\r\n\r\n{}"
    assert framer.feed(raw + b"GET / HTTP/1.1\r\n\r\n")
    assert framer.end == len(raw)
    assert bytes(framer.buffer[framer.end:]) == b"GET / HTTP/1.1\r\n\r\n"
    assert (framer.method, framer.path) == ("POST", "/v1/login")


@pytest.mark.parametrize("size", [b"0x40", b"+40", b"-40", b" 40", b"4 0", b"40 ", b"", b"g", b"40;",
                                  b"40;=x", b"40;a=\"", b"1" * 17])
def test_a_malformed_chunk_size_is_refused_with_400(size):
    framer = _framer()
    with pytest.raises(Refused) as caught:
        framer.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n{}\r\n0\r\n\r\n")
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [
    b"2\r\n{}XX",  # chunk data not followed by CRLF
    b"0\r\nX-Trailer: 1\r\n\r\n",  # a trailer section
    b"f" * (2048) + b"\r\n",  # a chunk-size line without end
])
def test_malformed_chunk_framing_is_refused_with_400(body):
    with pytest.raises(Refused) as caught:
        _framer().feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert caught.value.status == 400


def test_bodies_over_the_limit_are_413_announced_or_chunked_and_heads_over_theirs_431():
    with pytest.raises(Refused) as caught:
        _framer().feed(HEAD + b"Content-Length: 65\r\n\r\n")
    assert caught.value.status == 413
    framer = _framer()
    framer.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + b"a" * 32 + b"\r\n")
    with pytest.raises(Refused) as caught:
        framer.feed(b"21\r\n")
    assert caught.value.status == 413
    # tiny chunks cannot make the buffered framing unbounded either
    framer = _framer()
    framer.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(Refused) as caught:
        for _ in range(64):  # 64 bytes decoded, within the limit, but 3.7 KB of framing
            framer.feed(b"1;" + b"e" * 50 + b"\r\na\r\n")
    assert caught.value.status == 413
    with pytest.raises(Refused) as caught:
        _framer().feed(b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * 2000)
    assert caught.value.status == 431


def test_expect_100_continue_is_noticed_once_the_head_is_complete():
    framer = _framer()
    assert not framer.feed(HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert framer.head_complete and framer.expects_continue
    assert framer.feed(b"{}")
