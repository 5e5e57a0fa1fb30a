"""What a User-Agent says about the device, as fixed names only (a thin wrapper of ua-parser).

The User-Agent is written by whoever sends the request, an attacker included, so its text is
never repeated to a person: it is parsed with ua-parser (the uap-core rules) and only browser
and OS families on the lists below come out; anything else is ``None`` (an unknown browser or
system), so crafted text cannot reach an SMS, an email or a page.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ua_parser import parse

MAX_LENGTH = 512  # longer User-Agents are cut before parsing (no regex work on megabytes)

_BROWSERS = {
    "Chrome": "Chrome", "Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Android WebView", "Chromium": "Chromium", "HeadlessChrome": "Chrome",
    "Firefox": "Firefox", "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox",
    "Safari": "Safari", "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari",
    "Edge": "Edge", "Edge Mobile": "Edge", "Opera": "Opera", "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet", "Yandex Browser": "Yandex Browser", "Vivaldi": "Vivaldi",
    "Brave": "Brave", "DuckDuckGo Mobile": "DuckDuckGo", "UC Browser": "UC Browser", "IE": "Internet Explorer",
    "Line": "LINE", "Facebook": "Facebook", "Instagram": "Instagram", "curl": "curl",
    "Python Requests": "Python Requests", "okhttp": "OkHttp",
}
_SYSTEMS = {
    "Windows": "Windows", "Mac OS X": "macOS", "iOS": "iOS", "iPadOS": "iPadOS", "Android": "Android",
    "Linux": "Linux", "Ubuntu": "Linux", "Debian": "Linux", "Fedora": "Linux", "Chrome OS": "ChromeOS",
    "HarmonyOS": "HarmonyOS",
}


@dataclass(frozen=True)
class Device:
    browser: str | None
    os: str | None


@functools.lru_cache(maxsize=1024)
def describe(user_agent: str | None) -> Device:
    """Browser and OS family of ``user_agent``, each ``None`` unless on the fixed lists."""
    if not user_agent:
        return Device(None, None)
    result = parse(user_agent[:MAX_LENGTH])
    browser = _BROWSERS.get(result.user_agent.family) if result.user_agent else None
    system = _SYSTEMS.get(result.os.family) if result.os else None
    return Device(browser, system)
