"""The code contract for SMS and email bodies."""

from __future__ import annotations

import re

# ASCII digits only ("\d" would also match other scripts' digits).
_CODE_RE = re.compile(r"(?<![0-9])[0-9]{6}(?![0-9])")


def extract_code(text: str) -> str:
    """The first run of exactly 6 digits in ``text`` (not part of a longer digit run)."""
    match = _CODE_RE.search(text)
    if match is None:
        raise AssertionError(f"no 6-digit code in {text!r}")
    return match.group()
