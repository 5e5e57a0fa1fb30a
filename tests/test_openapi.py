"""openapi.yaml is valid OpenAPI 3.1 and agrees with what the Flask app serves.

Operations marked ``x-authsvc-status: planned`` are in the contract but not served yet; every
other operation must be served, and every served route must be documented (and not planned).
"""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from authsvc import errors
from authsvc.api import problems

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
STATUS_KEY = "x-authsvc-status"
STATUS_VALUES = {"planned", "served"}

# Error codes the API names (docs/api-guide.md, openapi.yaml); each is part of the API.
CONTRACT_CODES = {
    "rate_limited",
    "busy",
    "weak_password",
    "verification_failed",
    "invalid_credentials",
    "invalid_factor",
    "invalid_token",
    "account_frozen",
    "password_change_required",
    "last_factor",
    "transaction_mismatch",
    "already_redeemed",
    "step_up_required",
}
# Operations that are not JSON APIs: no rate-limit / problem answers required.
PLUMBING = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/.well-known/jwks.json"),
            ("GET", "/.well-known/oauth-authorization-server"), ("GET", "/openapi.yaml")}


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def spec() -> dict:
    with SPEC_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def is_planned(op: dict) -> bool:
    return op.get(STATUS_KEY) == "planned"


def resolve(spec: dict, node: object) -> object:
    """Follow local ``$ref``s (``#/components/...``) until a non-reference node."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        assert ref not in seen, f"reference cycle at {ref}"
        seen.add(ref)
        target: object = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def flask_path(rule: str) -> str:
    """``/v1/x/<uuid:id>/y`` -> ``/v1/x/{id}/y``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def served_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, flask_path(rule.rule)))
    return routes


def request_schema(spec: dict, op: dict) -> dict | None:
    body = resolve(spec, op.get("requestBody"))
    if not body:
        return None
    content = body["content"]
    if "application/json" not in content:  # the report page's HTML form is the one exception
        assert set(content) == {"application/x-www-form-urlencoded"}, "request bodies are application/json"
        return content["application/x-www-form-urlencoded"]["schema"]
    return content["application/json"]["schema"]


def strictness_problems(spec: dict, schema: object, where: str, *, top: bool = True) -> list[str]:
    """Object schemas in a request body must say what they accept: ``additionalProperties: false``
    (the body itself and every nested object), or an explicit bound for deliberately free-form
    members (e.g. WebAuthn ``clientExtensionResults``)."""
    schema = resolve(spec, schema)
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        for i, branch in enumerate(branches):
            found += strictness_problems(spec, branch, f"{where}/oneOf[{i}]", top=top)
        return found
    assert "allOf" not in schema, f"{where}: allOf with additionalProperties:false rejects valid bodies; use one object"
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types) or "properties" in schema
    if is_object:
        extra = schema.get("additionalProperties", "<absent>")
        if top and extra is not False:
            found.append(f"{where}: additionalProperties must be false (is {extra!r})")
        elif extra == "<absent>":
            found.append(f"{where}: nested object must set additionalProperties")
        elif extra is not False and "maxProperties" not in schema:
            found.append(f"{where}: free-form object needs maxProperties")
        for name, sub in (schema.get("properties") or {}).items():
            found += strictness_problems(spec, sub, f"{where}.{name}", top=False)
    if schema.get("type") == "array" or "items" in schema:
        found += strictness_problems(spec, schema.get("items"), f"{where}[]", top=False)
    return found


def validator_for(spec: dict, schema: dict) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator in which ``#/components/...`` resolves against the spec."""
    wrapper = {"$id": "urn:authsvc:openapi", "components": spec["components"], "allOf": [schema]}
    return Draft202012Validator(wrapper, format_checker=Draft202012Validator.FORMAT_CHECKER)


# --------------------------------------------------------------------------- the spec itself
def test_spec_is_valid_openapi_3_1(spec):
    assert str(spec["openapi"]).startswith("3.1."), spec["openapi"]
    validate_openapi(spec)  # raises OpenAPIValidationError


def test_operation_ids_unique_and_status_values_known(spec):
    ids = [op.get("operationId") for op in operations(spec).values()]
    assert None not in ids, "every operation has an operationId"
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for key, op in operations(spec).items():
        if STATUS_KEY in op:
            assert op[STATUS_KEY] in STATUS_VALUES, f"{key}: {STATUS_KEY} is one of {sorted(STATUS_VALUES)}"


def test_every_request_body_is_strict(spec):
    found = []
    for (method, path), op in operations(spec).items():
        schema = request_schema(spec, op)
        if schema is not None:
            found += strictness_problems(spec, schema, f"{method} {path}")
    assert not found, "\n".join(found)


def test_error_codes_are_documented(spec):
    documented = set(resolve(spec, {"$ref": "#/components/schemas/ErrorCode"})["enum"])
    raised = set()
    stack = [errors.AuthsvcError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls is not errors.ConfigError and not issubclass(cls, errors.ConfigError):
            raised.add(cls.code)
    raised |= set(problems._HTTP_CODES.values()) | {"http_error", "internal_error"}
    assert not (CONTRACT_CODES - documented), f"contract codes missing from ErrorCode: {CONTRACT_CODES - documented}"
    assert not (raised - documented), f"codes the server can answer but ErrorCode lacks: {raised - documented}"


def test_problem_responses(spec):
    """Every error answer is a problem document (an HTML page's "link no longer valid" is a
    page); every JSON API operation documents 429 + Retry-After."""
    for (method, path), op in operations(spec).items():
        responses = op["responses"]
        is_page = "text/html" in resolve(spec, responses.get("200", {})).get("content", {})
        for status, response in responses.items():
            response = resolve(spec, response)
            if not str(status).startswith(("4", "5")) or (method, path) == ("GET", "/readyz"):
                continue
            content = response.get("content", {})
            if is_page and list(content) == ["text/html"]:
                continue
            assert list(content) == ["application/problem+json"], f"{method} {path} {status}: {list(content)}"
            schema = content["application/problem+json"]["schema"]
            refs = [schema] + schema.get("allOf", [])
            assert {"$ref": "#/components/schemas/Problem"} in refs, f"{method} {path} {status} is not a Problem"
        if (method, path) in PLUMBING:
            continue
        assert "429" in responses, f"{method} {path} does not document 429"
        limited = resolve(spec, responses["429"])
        assert "Retry-After" in limited.get("headers", {}), f"{method} {path}: 429 without Retry-After"
        if request_schema(spec, op) is not None:
            for status in ("400", "413", "415"):
                assert status in responses, f"{method} {path} takes a body but does not document {status}"


def test_examples_match_their_schemas(spec):
    checked = 0
    for (method, path), op in operations(spec).items():
        media_types = []
        body = resolve(spec, op.get("requestBody"))
        if body:
            media_types += [(f"{method} {path} request", m) for m in body["content"].values()]
        for status, response in op["responses"].items():
            response = resolve(spec, response)
            media_types += [(f"{method} {path} {status}", m) for m in response.get("content", {}).values()]
        for where, media in media_types:
            if "example" in media:
                errs = sorted(validator_for(spec, media["schema"]).iter_errors(media["example"]), key=str)
                assert not errs, f"{where}: example does not match its schema: {errs[0].message}"
                checked += 1
    for name, schema in spec["components"]["schemas"].items():
        if "example" in schema:
            errs = list(validator_for(spec, {"$ref": f"#/components/schemas/{name}"}).iter_errors(schema["example"]))
            assert not errs, f"schema {name}: example does not match: {errs[0].message}"
            checked += 1
    assert checked >= 10


def test_request_schemas_refuse_what_the_contract_refuses(spec):
    """Spot checks of the strict request schemas themselves."""
    def ok(name: str, body: object) -> bool:
        return validator_for(spec, {"$ref": f"#/components/schemas/{name}"}).is_valid(body)

    good = {"email": "a@example.com", "phone": "+819012345678", "password": "correct horse battery staple"}
    assert ok("RegistrationRequest", good)
    assert not ok("RegistrationRequest", {**good, "role": "admin"})
    assert not ok("RegistrationRequest", {**good, "email": ["a@example.com"]})
    assert not ok("RegistrationRequest", {**good, "phone": "09012345678"})
    assert not ok("RegistrationRequest", {**good, "password": "x" * 513})
    assert ok("RegistrationVerifyRequest", {"phone_code": "012345", "email_code": "999999"})
    for bad in (123456, "12345", "1234567", "12345a", ["123456"], "١٢٣٤٥٦"):
        assert not ok("RegistrationVerifyRequest", {"phone_code": bad, "email_code": "999999"}), bad
    mfa = {"mfa_token": "t" * 43, "method": "totp", "code": "123456"}
    assert ok("LoginMfaRequest", mfa)
    assert not ok("LoginMfaRequest", {**mfa, "code": 123456})
    assert not ok("LoginMfaRequest", {**mfa, "method": "email"})
    assert not ok("LoginMfaRequest", {**mfa, "credential": {}})
    assert not ok("TotpEnrollRequest", {"secret": "JBSWY3DPEHPK3PXP"})
    pay = {"action": "payment.authorize", "transaction": {"amount": "12.50", "currency": "JPY", "payee": "m-1"}}
    assert ok("StepUpRequest", pay)
    assert not ok("StepUpRequest", {**pay, "transaction": {**pay["transaction"], "amount": 12.5}})
    assert not ok("StepUpRequest", {**pay, "transaction": {**pay["transaction"], "currency": "jpy"}})
    assert not ok("StepUpRequest", {**pay, "transaction": {**pay["transaction"], "fee": "1"}})


# --------------------------------------------------------------------------- spec vs. app
def test_every_served_route_is_documented_and_not_planned(spec, app):
    ops = operations(spec)
    missing = sorted(r for r in served_routes(app) if r not in ops)
    planned = sorted(r for r in served_routes(app) if r in ops and is_planned(ops[r]))
    assert not missing, f"served but not in openapi.yaml: {missing}"
    assert not planned, f"served but marked {STATUS_KEY}: planned (drop the mark): {planned}"


def test_every_operation_not_planned_is_served(spec, app):
    served = served_routes(app)
    unserved = sorted(key for key, op in operations(spec).items() if not is_planned(op) and key not in served)
    assert not unserved, f"in openapi.yaml without {STATUS_KEY}: planned, but not served: {unserved}"


def test_served_post_request_schemas_forbid_additional_properties(spec, app):
    ops = operations(spec)
    served_posts = [r for r in served_routes(app) if r[0] == "POST" and r in ops]
    assert served_posts, "the app serves POST endpoints"
    for method, path in served_posts:
        schema = request_schema(spec, ops[(method, path)])
        if schema is None:
            continue
        schema = resolve(spec, schema)
        branches = schema.get("oneOf") or schema.get("anyOf") or [schema]
        for branch in branches:
            branch = resolve(spec, branch)
            assert branch.get("additionalProperties") is False, f"{method} {path}: additionalProperties is not false"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def test_served_endpoints_refuse_bodies_the_spec_refuses(spec, app):
    """The server is as strict as the spec: for the served endpoints that need no credentials,
    the documented example plus an unknown field, or minus a required field, is a 400 problem
    document (refused before any work is done)."""
    client = app.test_client()
    ops = operations(spec)
    tried = 0
    for method, path in sorted(served_routes(app)):
        op = ops.get((method, path))
        if op is None or "requestBody" not in op or op.get("security", spec.get("security")) != []:
            continue
        content = resolve(spec, op["requestBody"])["content"]
        if "application/json" not in content:
            continue  # an HTML form (the report page): tested in test_report_page.py
        media = content["application/json"]
        example = media.get("example")
        assert isinstance(example, dict), f"{method} {path}: give the request body an example"
        schema = resolve(spec, media["schema"])
        required = schema.get("required", [])

        bodies = [{**copy.deepcopy(example), "is_admin": True}]
        if required:
            bodies.append({k: v for k, v in example.items() if k != required[0]})
        for body in bodies:
            resp = client.open(_concrete(path), method=method, json=body)
            assert resp.status_code == 400, (method, path, body, resp.status_code, resp.get_data(as_text=True))
            assert resp.mimetype == "application/problem+json"
            problem = resp.get_json()
            assert problem["code"] == "invalid_request"
            assert validator_for(spec, {"$ref": "#/components/schemas/Problem"}).is_valid(problem), problem
            tried += 1
    assert tried >= 4


def test_the_spec_is_served_at_openapi_yaml(spec, app):
    r = app.test_client().get("/openapi.yaml")
    assert r.status_code == 200 and r.mimetype == "application/yaml"
    assert yaml.safe_load(r.get_data()) == spec
