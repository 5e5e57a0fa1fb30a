"""The message catalogue: gettext translations compiled with Babel, one per locale.

English is the source language (the msgids); every other locale has a ``.po`` source in
``locales/<locale>/LC_MESSAGES/authsvc.po`` and its compiled ``.mo`` beside it. After editing
texts, refresh them with (Babel's own command line, installed with the project)::

    pybabel extract -F babel.cfg -k N_ --no-location --sort-output --project authsvc --version 1 \
        -w 100 -o authsvc/i18n/locales/authsvc.pot authsvc
    pybabel update -i authsvc/i18n/locales/authsvc.pot -d authsvc/i18n/locales -D authsvc \
        -w 100 --ignore-obsolete
    (translate the new entries of the .po and drop their "fuzzy" marks)
    pybabel compile -d authsvc/i18n/locales -D authsvc

``tests/test_i18n.py`` fails when a text lacks a translation or a ``.mo`` is stale.
"""

from __future__ import annotations

import functools
import gettext
from datetime import datetime
from pathlib import Path
from typing import TypeGuard
from zoneinfo import ZoneInfo

from babel import dates
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
DOMAIN = "authsvc"
LOCALES: tuple[str, ...] = ("en", "ja")
SOURCE_LOCALE = "en"
# Where a locale's readers live: times in messages and pages are shown in this zone.
_TIMEZONES = {"en": "UTC", "ja": "Asia/Tokyo"}


def supported(locale: str | None) -> TypeGuard[str]:
    return locale in LOCALES


@functools.cache
def translations(locale: str) -> gettext.NullTranslations:
    """The catalogue of ``locale`` (English, the source language, needs none)."""
    if locale == SOURCE_LOCALE:
        return NullTranslations()
    if locale not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    mo = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with mo.open("rb") as fp:  # a missing catalogue is a broken install: fail loudly
        return Translations(fp, domain=DOMAIN)


def format_time(when: datetime, locale: str) -> str:
    """A date and time as people of ``locale`` write it, in their zone, with the zone named."""
    zone = ZoneInfo(_TIMEZONES.get(locale, "UTC"))
    return dates.format_datetime(when, "medium", tzinfo=zone, locale=locale) + " " + (
        "JST" if zone.key == "Asia/Tokyo" else "UTC"
    )
