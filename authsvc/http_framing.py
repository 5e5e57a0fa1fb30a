"""Where an HTTP/1.1 request ends: enough of a parser to tell when a request's head and body
have all arrived, so the server hands the application only whole requests (authsvc/workers.py).

It is not the parser that serves the request (gunicorn's is); it answers one question about
the bytes received so far: is the request complete, not yet, or refused? The rules follow
the framing gunicorn applies afterwards, so the two never disagree about where a body ends:

- the head ends at the first empty line (CRLF CRLF), and is at most ``max_head`` bytes;
- a ``Transfer-Encoding`` whose last coding is ``chunked`` frames the body in chunks; each
  chunk-size line is 1*HEXDIG with optional RFC 9112 extensions, nothing else (``0x40``,
  ``+40``, ``-1``, `` 40`` are refused with 400, never handed on); the chunks may add up to at
  most ``max_body`` bytes (413); a trailer section is refused (400: no endpoint takes one);
- otherwise one ``Content-Length`` of ASCII digits frames ``max_body`` bytes at most (413
  as soon as the head announces more, before any body is read);
- any other combination (several lengths, a length with a transfer coding, a coding that is
  not chunked last, ...) is one gunicorn refuses from the head alone, without reading a body:
  the request is "complete" as soon as its head is, and gunicorn answers 400 or 501.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from . import errors, logs

# RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
# names and values tokens or quoted strings (RFC 9110 section 5.6.2, 5.6.4).
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_EXT = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,19}")
MAX_CHUNK_LINE = 1024  # a size and its extensions; ours are a few bytes


class Refused(Exception):
    """The request cannot be served: answer ``status`` (400, 413, 431) and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RequestFramer:
    """Feed it the bytes of one request as they arrive; ``feed`` says when it is complete.

    ``end`` is then the offset just past the request in ``buffer`` (bytes after it belong to
    the next, pipelined request); ``method`` and ``path`` name the request for the access log
    once its head has arrived. ``expects_continue`` is true when the client waits for
    ``100 Continue`` before sending its body.
    """

    __slots__ = ("buffer", "max_head", "max_body", "method", "path", "expects_continue", "end",
                 "_head_end", "_scan", "_length", "_pos", "_chunk_left", "_decoded")

    def __init__(self, *, max_head: int, max_body: int) -> None:
        self.buffer = bytearray()
        self.max_head = max_head
        self.max_body = max_body
        self.method: str | None = None
        self.path: str | None = None
        self.expects_continue = False
        self.end: int | None = None
        self._head_end = -1
        self._scan = 0  # where the search for the end of the head resumes
        self._length = 0  # Content-Length framing: body bytes expected
        self._pos = 0  # chunked framing: where the next unread piece starts
        self._chunk_left: int | None = None  # chunked: data bytes (+ CRLF) still to come in this chunk
        self._decoded = 0

    @property
    def received(self) -> int:
        return len(self.buffer)

    @property
    def head_complete(self) -> bool:
        return self._head_end >= 0

    def feed(self, data: bytes) -> bool:
        """Add ``data``; True once the request is complete. Raises :class:`Refused`."""
        self.buffer += data
        if self.end is not None:
            return True
        if self._head_end < 0:
            if not self._find_head_end():
                return False
        if self._pos < 0:  # Content-Length framing
            if len(self.buffer) - self._head_end >= self._length:
                self.end = self._head_end + self._length
                return True
            return False
        if self._chunk_left is None and self._pos == 0:  # no body, or a head gunicorn refuses
            self.end = self._head_end
            return True
        if self._scan_chunks():
            return True
        if len(self.buffer) - self._head_end > 4 * self.max_body + MAX_CHUNK_LINE:
            # within the limit once decoded, but framed around tiny chunks and long extensions
            raise Refused(413, f"request bodies are limited to {self.max_body} bytes")
        return False

    # --- head -------------------------------------------------------------------------------
    def _find_head_end(self) -> bool:
        buf = self.buffer
        start = 0
        while buf.startswith(b"\r\n", start):  # RFC 9112 2.2: empty lines before a request
            start += 2
        idx = buf.find(b"\r\n\r\n", max(start, self._scan - 3))
        if idx < 0:
            self._scan = len(buf)
            if len(buf) - start > self.max_head:
                raise Refused(431, f"the request head is larger than {self.max_head} bytes")
            return False
        if idx + 4 - start > self.max_head:
            raise Refused(431, f"the request head is larger than {self.max_head} bytes")
        self._head_end = idx + 4
        self._frame(bytes(buf[start:idx]))
        return True

    def _frame(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) == 3:
            self.method = parts[0].decode("latin-1")[:16]
            self.path = parts[1].partition(b"?")[0].decode("latin-1")[:256]  # never the query
        http10 = parts[-1] == b"HTTP/1.0"
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue  # gunicorn refuses the head
            name = name.lower()
            value = value.strip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.extend(v.strip(b" \t").lower() for v in value.split(b","))
            elif name == b"expect" and value.lower() == b"100-continue" and not http10:
                self.expects_continue = True
        if codings:
            if codings[-1] == b"chunked" and not lengths and not http10:
                self._pos = self._head_end
                self._chunk_left = -1  # a chunk-size line comes next
            # else: refused by gunicorn from the head alone (RFC 9112 6.1, 6.3)
            return
        if len(lengths) == 1 and _DIGITS.fullmatch(lengths[0]):
            length = int(lengths[0])
            if length > self.max_body:
                raise Refused(413, f"request bodies are limited to {self.max_body} bytes")
            self._length = length
            self._pos = -1
        elif len(lengths) > 1 or lengths:
            pass  # several or malformed lengths: gunicorn refuses the head
        else:
            self.expects_continue = False  # no body to wait for

    # --- chunked body -----------------------------------------------------------------------
    def _scan_chunks(self) -> bool:
        buf = self.buffer
        while True:
            if self._chunk_left == -1:  # a chunk-size line
                idx = buf.find(b"\r\n", self._pos)
                if idx < 0:
                    if len(buf) - self._pos > MAX_CHUNK_LINE:
                        raise Refused(400, "malformed chunked body: chunk-size line too long")
                    return False
                line = bytes(buf[self._pos:idx])
                size, semi, ext = line.partition(b";")
                if semi:
                    size = size.rstrip(b" \t")  # BWS only before an extension
                    if not _CHUNK_EXT.fullmatch(b";" + ext):
                        raise Refused(400, "malformed chunked body: invalid chunk extension")
                if not _HEX.fullmatch(size):
                    raise Refused(400, "malformed chunked body: the chunk size must be hexadecimal digits")
                n = int(size, 16)
                self._decoded += n
                if self._decoded > self.max_body:
                    raise Refused(413, f"request bodies are limited to {self.max_body} bytes")
                self._pos = idx + 2
                self._chunk_left = n + 2 if n else -2  # data and its CRLF; -2: trailer section
                continue
            if self._chunk_left == -2:  # after the last chunk: an empty trailer section
                if len(buf) - self._pos < 2:
                    return False
                if buf[self._pos:self._pos + 2] != b"\r\n":
                    raise Refused(400, "trailer fields are not accepted")
                self.end = self._pos + 2
                return True
            assert self._chunk_left is not None
            have = len(buf) - self._pos
            if have < self._chunk_left:
                return False
            end = self._pos + self._chunk_left
            if buf[end - 2:end] != b"\r\n":
                raise Refused(400, "malformed chunked body: chunk data not followed by CRLF")
            self._pos = end
            self._chunk_left = -1


# --- what the front answers itself (both workers)
_access = logging.getLogger(logs.ACCESS_LOGGER)

_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            431: "Request Header Fields Too Large"}
_ERRORS: dict[int, type[errors.AuthsvcError]] = {
    400: errors.InvalidRequest, 408: errors.RequestTimeout, 413: errors.PayloadTooLarge,
    431: errors.RequestHeadTooLarge}
_METRIC_REASONS = {400: "malformed", 408: "timeout", 413: "too_large", 431: "head_too_large"}


def problem_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 response with an RFC 9457 problem document, closing the connection."""
    code, title = _ERRORS[status].code, _ERRORS[status].title
    body = json.dumps({"type": f"https://authsvc.dev/problems/{code}", "title": title, "status": status,
                       "code": code, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def log_refusal(framer: RequestFramer | None, status: int, detail: str, peer: Any, started: float,
                 app: Any) -> None:
    """The access line (and metric) of a request the front answered itself; ``client`` is the
    TCP peer (the app's trusted-proxy rules need headers this request never finished sending)."""
    try:
        container = getattr(app, "extensions", {}).get("authsvc")
        if container is not None:
            container.metrics.unread_requests.labels(_METRIC_REASONS[status]).inc()
    except Exception:  # noqa: BLE001 - counting must never break serving
        pass
    if not _access.isEnabledFor(logging.INFO):
        return
    method = framer.method if framer else None
    path = framer.path if framer else None
    client = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    _access.info("%s %s %s", method or "-", path or "-", status, extra={
        "request_id": logs.request_id_from(None),
        "fields": {"method": method, "route": None, "path": path, "status": status,
                   "latency_ms": round((time.monotonic() - started) * 1000, 2), "client": client,
                   "user_agent": None, "unread": _METRIC_REASONS[status], "detail": detail},
    })
