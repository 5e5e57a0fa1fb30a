"""Strict request bodies, checked in one place before any work is done.

A body must be ``application/json``, at most 64 KiB, valid UTF-8, valid JSON without
duplicate keys, NaN/Infinity, NUL characters or nesting deeper than ``MAX_DEPTH``; then it
must match a strict pydantic model (unknown fields and wrong types are refused). Where an
RFC says so (introspection, RFC 7662), an ``application/x-www-form-urlencoded`` body is read
as strictly instead.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar
from urllib.parse import parse_qsl

from flask import request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .. import errors

MAX_BODY = 64 * 1024
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_DEPTH = 8
M = TypeVar("M", bound=BaseModel)


def _bad(detail: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(detail)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"duplicate key {key!r} in JSON object")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise _bad(f"{name} is not allowed in JSON")


def _check(value: object) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _bad(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            if "\x00" in item:
                raise _bad("NUL characters are not allowed")
        elif isinstance(item, dict):
            for k, v in item.items():
                if "\x00" in k:
                    raise _bad("NUL characters are not allowed")
                stack.append((v, depth + 1))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _raw_body(*, json_only: bool) -> bytes:
    """The body's bytes, after the checks every body format shares: its size (announced and
    actual), the media type where it must be JSON, and a UTF-8 charset."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.PayloadTooLarge(f"request bodies are limited to {MAX_BODY} bytes")
    if json_only and request.mimetype != "application/json":
        raise errors.UnsupportedMediaType("send the body as application/json")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise errors.UnsupportedMediaType("the body must be UTF-8")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        raise errors.PayloadTooLarge(f"request bodies are limited to {MAX_BODY} bytes")
    return raw


def read_json() -> object:
    raw = _raw_body(json_only=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the body is not valid UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except errors.InvalidRequest:
        raise
    except (ValueError, RecursionError):
        raise _bad("the body is not valid JSON") from None
    _check(data)
    return data


def read_form() -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (RFC 7662 clients send these), as strict
    as JSON: UTF-8, percent-encoding well formed, no duplicate or NUL-carrying fields."""
    raw = _raw_body(json_only=False)
    try:
        text = raw.decode("ascii")  # form bodies are percent-encoded ASCII
        if _BAD_ESCAPE.search(text):
            raise ValueError("a % not followed by two hex digits")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _bad("the body is not a valid form (UTF-8, percent-encoded)") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"duplicate field {key!r} in the form")
        if "\x00" in key or "\x00" in value:
            raise _bad("NUL characters are not allowed")
        out[key] = value
    return out


def parse(model: type[M], *, form: bool = False) -> M:
    """The body as ``model``; ``form``: ``application/x-www-form-urlencoded`` is accepted too."""
    if not model.model_fields and not request.get_data(cache=True):
        return model()  # an action without input may be POSTed with no body at all
    if form and request.mimetype == "application/x-www-form-urlencoded":
        data: object = read_form()
    else:
        data = read_json()
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "(body)",
                "message": _message(e),
            }
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise errors.InvalidRequest("the body does not match the schema", errors=problems) from None


def _message(e: ErrorDetails) -> str:
    if e["type"] == "extra_forbidden":
        return "unknown field"
    return e["msg"]
