"""Confusable skeletons (Unicode Technical Standard #39, section 4 "Confusable Detection").

``skeleton(X) = NFD(map(NFD(X)))``, where *map* replaces every character that has an entry in
Unicode's ``confusables.txt`` by its prototype; two strings are confusable exactly when their
skeletons are equal ("paypal" and "pаypal" with a Cyrillic а, "alice" and "alıce"). The data
file is bundled (``data/confusables.txt.gz``; see ``data/README.md`` for its source, version
and how to update it) and read once, on first use.

``email_skeleton`` compares emails the way a person reads them: the NFKC, case-folded address
(``contacts.normalize_email``), skeletonised, with a COMBINING DOT ABOVE after a soft-dotted
letter dropped (the dot merges with the dot of the i: "İ" case-folds to "i" + U+0307, which
looks like "i").
"""

from __future__ import annotations

import gzip
import re
import threading
import unicodedata
from importlib import resources

_RESOURCE = "data/confusables.txt.gz"
_LINE = re.compile(r"^([0-9A-F]{4,6})\s*;\s*([0-9A-F]{4,6}(?: [0-9A-F]{4,6})*)\s*;\s*MA\b")
_DOT_ABOVE_AFTER_SOFT_DOTTED = re.compile("(?<=[ij])\u0307")

_map: dict[int, str] | None = None
_lock = threading.Lock()


def _prototypes() -> dict[int, str]:
    global _map
    if _map is None:
        with _lock:
            if _map is None:
                raw = resources.files(__package__).joinpath(_RESOURCE).read_bytes()
                table: dict[int, str] = {}
                for line in gzip.decompress(raw).decode("utf-8-sig").splitlines():
                    m = _LINE.match(line)
                    if m:
                        table[int(m.group(1), 16)] = "".join(chr(int(c, 16)) for c in m.group(2).split())
                _map = table
    return _map


def entry_count() -> int:
    """Mappings in the bundled data (loads it on first use)."""
    return len(_prototypes())


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``text``."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(_prototypes()))


def email_skeleton(email_normalized: str) -> str:
    """The skeleton an email is compared on, besides its normalised form (see module doc)."""
    once = skeleton(email_normalized)
    return unicodedata.normalize("NFD", _DOT_ABOVE_AFTER_SOFT_DOTTED.sub("", once))
