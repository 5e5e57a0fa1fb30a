"""A fake of Twilio's Messages API and Lookup v2 API on 127.0.0.1, for the real twilio client
to talk to (its host rewrite sends api.twilio.com and lookups.twilio.com alike here).

    with FakeTwilio("AC" + "0" * 32, "token") as fake:
        TwilioSms(fake.account_sid, fake.auth_token, "+15550000000", api_base=fake.base_url)
        fake.line_types["+14155552671"] = "landline"   # Lookup answers "mobile" otherwise
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from email.utils import formatdate

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

_MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
_LOOKUP_PREFIX = "/v2/PhoneNumbers/"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # no access log on stderr
        pass


class FakeTwilio:
    def __init__(self, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.messages: list[dict] = []
        self.line_types: dict[str, str] = {}  # Lookup's line type per number; default "mobile"
        self.lookups: list[dict] = []  # every Lookup request: {"number", "fields"}
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self.delay = 0.0  # slow mode: seconds before each accepted message is answered
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> FakeTwilio:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    # --- knobs and assertions -------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` Messages requests fail with ``status`` (nothing recorded)."""
        with self._lock:
            self._failures.extend([status] * n)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.line_types.clear()
            self.lookups.clear()
            self._failures.clear()
        self.delay = 0.0

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [dict(m) for m in self.messages]

    def wait_for(self, predicate: Callable[[dict], bool] | None = None, timeout: float = 5) -> dict:
        """The first recorded message matching ``predicate``, polling until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.snapshot():
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching SMS within {timeout}s; got {self.snapshot()!r}")
            time.sleep(0.02)

    # --- the HTTP side ------------------------------------------------------------------
    def _app(self, environ, start_response):
        return self._handle(Request(environ))(environ, start_response)

    def _handle(self, request: Request) -> Response:
        with self._lock:
            status = self._failures.pop(0) if self._failures else None
        if status is not None:  # a simulated outage fails before anything else
            return _error(status, 20500 if status >= 500 else status * 100, "Simulated failure")
        auth = request.authorization
        if auth is None or auth.type != "basic" or (auth.username, auth.password) != (
            self.account_sid,
            self.auth_token,
        ):
            return _error(401, 20003, "Authenticate")
        if request.method == "GET" and request.path.startswith(_LOOKUP_PREFIX):
            return self._lookup(request)
        if request.method != "POST" or request.path != _MESSAGES_PATH.format(sid=self.account_sid):
            return _error(404, 20404, "The requested resource was not found")

        form = request.form
        to, from_, body = form.get("To"), form.get("From"), form.get("Body")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")

        sid = "SM" + secrets.token_hex(16)
        with self._lock:
            self.messages.append({"to": to, "from_": from_, "body": body, "account_sid": self.account_sid, "sid": sid})
        if self.delay:  # accepted (recorded) at once, answered late: a slow provider
            time.sleep(self.delay)
        now = formatdate(usegmt=True)
        payload = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return Response(json.dumps(payload), status=201, mimetype="application/json")


    def _lookup(self, request: Request) -> Response:
        """Lookup v2: ``GET /v2/PhoneNumbers/{number}?Fields=line_type_intelligence``."""
        number = request.path[len(_LOOKUP_PREFIX):]
        fields = request.args.get("Fields", "")
        with self._lock:
            self.lookups.append({"number": number, "fields": fields})
            line_type = self.line_types.get(number, "mobile")
        valid = number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16
        intelligence = None
        if valid and "line_type_intelligence" in fields.split(","):
            intelligence = {"carrier_name": "Fake Carrier", "error_code": None, "mobile_country_code": None,
                            "mobile_network_code": None, "type": line_type}
        payload = {
            "calling_country_code": None,
            "country_code": None,
            "phone_number": number,
            "national_format": None,
            "valid": valid,
            "validation_errors": [] if valid else ["NOT_A_NUMBER"],
            "caller_name": None,
            "sim_swap": None,
            "call_forwarding": None,
            "line_status": None,
            "line_type_intelligence": intelligence,
            "identity_match": None,
            "reassigned_number": None,
            "sms_pumping_risk": None,
            "phone_number_quality_score": None,
            "pre_fill": None,
            "url": f"https://lookups.twilio.com/v2/PhoneNumbers/{number}",
        }
        return Response(json.dumps(payload), status=200, mimetype="application/json")


def _error(status: int, code: int, message: str) -> Response:
    payload = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(payload), status=status, mimetype="application/json")

