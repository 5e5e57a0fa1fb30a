"""docs/api-guide.md cannot drift from openapi.yaml, errors.py and the webhook events sent."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from authsvc import errors

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "api-guide.md").read_text()
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")
_HEADING = re.compile(r"^###\s+`(GET|POST|PUT|PATCH|DELETE) (/\S*)`\s*$", re.M)


def _error_classes(cls=errors.AuthsvcError):
    for sub in cls.__subclasses__():
        yield sub
        yield from _error_classes(sub)


def test_every_operation_has_a_section_and_every_section_an_operation():
    spec = {(m.upper(), path) for path, ops in SPEC["paths"].items() for m in ops if m in METHODS}
    guide = set(_HEADING.findall(GUIDE))
    assert len(spec) > 30
    missing = sorted(spec - guide)
    assert not missing, f"docs/api-guide.md needs a '### `METHOD /path`' section for {missing}"
    extra = sorted(guide - spec)
    assert not extra, f"docs/api-guide.md describes operations openapi.yaml does not have: {extra}"
    assert len(_HEADING.findall(GUIDE)) == len(guide), "an operation has two sections"


def test_error_codes_in_the_guide_exist_and_every_client_facing_code_is_listed():
    table = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", GUIDE, re.M))
    known: dict[str, set[int]] = {}
    for cls in _error_classes():
        known.setdefault(cls.code, set()).add(cls.status)
    unknown = sorted(code for code in table if code not in known)
    assert not unknown, f"the guide lists codes errors.py does not have: {unknown}"
    wrong_status = sorted(code for code, status in table.items() if int(status) not in known[code])
    assert not wrong_status, f"status in the guide differs from errors.py: {wrong_status}"
    facing = {code for code, statuses in known.items() if any(400 <= s < 500 or s == 503 for s in statuses)}
    missing = sorted(facing - set(table))
    assert not missing, f"docs/api-guide.md's error table lacks {missing}"
    mentioned = set(re.findall(r"\d{3} `([a-z_]+)`", GUIDE))
    assert mentioned <= set(known), sorted(mentioned - set(known))


def test_every_webhook_event_the_code_sends_is_documented():
    sent = set()
    for path in (ROOT / "authsvc").rglob("*.py"):
        sent |= set(re.findall(r"\.event\(\s*\w+\s*,\s*\"([a-z_]+\.[a-z_.]+)\"", path.read_text()))
    assert len(sent) >= 5
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_.]+)` \|", GUIDE, re.M))
    assert not sent - documented, f"docs/api-guide.md's webhook table lacks {sorted(sent - documented)}"
    assert not documented - sent, f"documented webhook events nobody sends: {sorted(documented - sent)}"


def test_readme_links_the_guide_not_a_missing_file():
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links {target}, which is not in the repository"
    assert "docs/api-guide.md" in readme
