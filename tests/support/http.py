"""A small HTTP client with the Flask test client's shape (``post(path, json=, headers=)`` ->
``.status_code``, ``.get_json()``, ``.headers``), so the shared flows (tests/support/flows.py)
run against a real server (``authsvc serve`` in a child process)."""

from __future__ import annotations

import http.client
import json as jsonlib
from typing import Any
from urllib.parse import urlencode


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, data: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.data = data

    def get_json(self) -> Any:
        try:
            return jsonlib.loads(self.data) if self.data else None
        except ValueError:
            return None

    @property
    def json(self) -> Any:
        return self.get_json()

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.data[:200]!r}>"


class HttpClient:
    """One request per connection (no keep-alive: a restarting server never holds one)."""

    def __init__(self, host: str, port: int, *, timeout: float = 30, headers: dict[str, str] | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = dict(headers or {})

    def request(self, method: str, path: str, *, json: Any = None, data: Any = None,
                headers: dict[str, str] | None = None, query: dict | None = None) -> Response:
        h = {**self.headers, **(headers or {})}
        body: bytes | None = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(data, dict):
            body = urlencode(data).encode()
            h.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif data is not None:
            body = data if isinstance(data, bytes) else str(data).encode()
        if query:
            path += "?" + urlencode(query)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)
