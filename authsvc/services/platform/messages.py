"""Every SMS and email text, in the account's language, from the gettext catalogue.

Rules:
- texts live in the catalogue (``authsvc/i18n``), never in the services: a service asks for a
  message by key and gets it in the locale of the account (or of the registration);
- in an SMS or email that carries a code, the code comes first: it is the first run of exactly
  6 digits of the body (docs/api-guide.md); nothing else in an SMS is a run of 6 digits;
- SMS fit one segment where the carrier allows: 160 GSM-7 characters in English (the English
  texts use the GSM-7 alphabet only), 70 UCS-2 characters in Japanese, except the notices
  that must carry a link;
- nothing an attacker writes is quoted: a device is named from the parsed User-Agent (browser
  and OS families from a fixed list), never from its raw text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ... import i18n
from ...security import useragent


def N_(msgid: str) -> str:
    """Marks a text for the catalogue (``pybabel extract -k N_``); translated when rendered."""
    return msgid


SMS: dict[str, str] = {
    "registration_code": N_("{code} is your verification code. It expires in {minutes} minutes."),
    "login_code": N_("{code} is your sign-in code. It expires in {minutes} minutes."),
    "reset_code": N_("{code} is your password reset code. It expires in {minutes} minutes. "
                     "Never share it: we will never ask for it."),
    "phone_change_code": N_("{code} is your code to confirm this phone number. It expires in {minutes} minutes."),
    "new_device": N_("New sign-in to your account from {device}. Not you? {link}"),
    "phone_changed": N_("The phone number of your account was changed. Not you? {link}"),
    "email_changed": N_("The email address of your account was changed. Not you? {link}"),
    "factor_added": N_("A new second factor ({factor}) was added to your account. "
                       "If this was not you, contact support now."),
    "factor_removed": N_("A second factor ({factor}) was removed from your account. "
                         "If this was not you, contact support now."),
    "recovery_codes_renewed": N_("New recovery codes were made for your account; the old ones no longer "
                                 "work. If this was not you, contact support now."),
    "password_changed": N_("Your password was changed. If this was not you, contact support now."),
    "password_login_on": N_("Password sign-in was turned on for your account. "
                            "If this was not you, contact support now."),
    "password_login_off": N_("Password sign-in was turned off for your account: sign in with your passkey. "
                             "If this was not you, contact support now."),
    "password_reset": N_("Your password was reset and every session signed out. "
                         "If this was not you, contact support now."),
    "login_locked": N_("Sign-in to your account is paused for {minutes} minutes after repeated wrong codes."),
    "known_device_guessing": N_("Wrong codes were entered on a signed-in device of yours. Not you? {link}"),
    "reported_frozen": N_("Your account is frozen after your report and every session was signed out. "
                          "Contact support to restore access."),
    "operator_frozen": N_("Your account was frozen by our security team. Contact support to restore access."),
    "operator_unfrozen": N_("Your account is active again. You can sign in."),
    "operator_unfrozen_reset": N_("Your account is active again. "
                                  "Reset your password to sign in: we text a code to this phone."),
    "operator_password_change": N_("For your security you must choose a new password at your next sign-in."),
    "operator_factors_reset": N_("Your second factors were reset by our security team. "
                                 "Sign in to set up a new one."),
}

EMAIL: dict[str, tuple[str, str]] = {
    "registration_code": (
        N_("Verify your email"),
        N_("{code} is your email verification code.\n\nIt expires in {minutes} minutes. "
           "If you did not ask for it, ignore this message."),
    ),
    "registration_taken": (
        N_("Someone tried to register with your email"),
        N_("Someone tried to create a new account with this email address, which already has an "
           "account.\n\nIf it was you, log in instead, or reset your password. If it was not you, "
           "you need not do anything: no account was made."),
    ),
    "email_change_code": (
        N_("Confirm your new email"),
        N_("{code} is your code to confirm this email address.\n\nIt expires in {minutes} minutes. "
           "If you did not ask for it, ignore this message."),
    ),
    "email_change_taken": (
        N_("Someone tried to use your email"),
        N_("Someone tried to move another account to this email address, which already has an "
           "account. Nothing was changed."),
    ),
    "new_device": (
        N_("New sign-in to your account"),
        N_("Your account was just signed in to from a device we have not seen before:\n\n"
           "  {device}, IP address {ip}\n  {time}\n\n"
           "If this was you, nothing needs doing. If it was not, open this link at once: it "
           "freezes the account and signs out every session.\n\n  {link}\n"),
    ),
    "phone_changed": (
        N_("Your phone number was changed"),
        N_("The phone number of your account was changed.\n\nIf this was not you, open this link "
           "at once: it freezes the account and signs out every session.\n\n  {link}\n"),
    ),
    "email_changed": (
        N_("Your email address was changed"),
        N_("The email address of your account was changed.\n\nIf this was not you, open this link "
           "at once: it freezes the account and signs out every session.\n\n  {link}\n"),
    ),
    "factor_added": (
        N_("Your sign-in methods changed"),
        N_("A new second factor ({factor}) was added to your account.\n\nIf this was not you, "
           "someone has access to your account: contact support now."),
    ),
    "factor_removed": (
        N_("Your sign-in methods changed"),
        N_("A second factor ({factor}) was removed from your account.\n\nIf this was not you, "
           "someone has access to your account: contact support now."),
    ),
    "recovery_codes_renewed": (
        N_("Your sign-in methods changed"),
        N_("New recovery codes were made for your account; the old ones no longer work.\n\nIf "
           "this was not you, someone has access to your account: contact support now."),
    ),
    "password_login_on": (
        N_("Your sign-in methods changed"),
        N_("Password sign-in was turned on for your account.\n\nIf this was not you, someone has "
           "access to your account: contact support now."),
    ),
    "password_login_off": (
        N_("Your sign-in methods changed"),
        N_("Password sign-in was turned off for your account: from now on you sign in with your "
           "passkey.\n\nIf this was not you, someone has access to your account: contact support now."),
    ),
    "password_changed": (
        N_("Your password was changed"),
        N_("Your password was just changed and every session was signed out.\n\nIf this was not "
           "you, contact support now."),
    ),
    "password_reset": (
        N_("Your password was reset"),
        N_("Your password was just reset and every session was signed out. Sign in again with "
           "your new password and your second factor.\n\nIf this was not you, contact support now."),
    ),
    "login_paused_new_devices": (
        N_("Many failed sign-ins to your account"),
        N_("Someone has been trying passwords for your account from devices we do not know, so "
           "sign-ins from new devices are paused for a while. Your own devices keep working.\n\n"
           "To sign in from a new device meanwhile, enter this sign-in pass with your password "
           "(it works once, for {hours} hours):\n\n{login_pass}\n\nIf you use the same password "
           "anywhere else, change it there, and choose a new one here too."),
    ),
    "login_locked": (
        N_("Sign-in to your account is paused"),
        N_("There were {failures} wrong second-factor answers for your account in the last 15 "
           "minutes, so sign-in is paused for {minutes} minutes.\n\nIf this was not you, someone "
           "knows your password: change it as soon as sign-in resumes."),
    ),
    "known_device_guessing": (
        N_("Wrong codes on one of your devices"),
        N_("There were {failures} wrong second-factor answers in the last 15 minutes from a device "
           "that was signed in to your account:\n\n  {device}, IP address {ip}\n  {time}\n\n"
           "That device is paused for a while. If this was not you, someone has your password or "
           "one of your devices: open this link at once. It freezes the account and signs out "
           "every session.\n\n  {link}\n"),
    ),
    "reported_frozen": (
        N_("Your account is frozen"),
        N_("Thank you for reporting the sign-in. Your account is frozen and every session was "
           "signed out, so nobody can use it now. Contact support to restore access; you will set "
           "a new password then."),
    ),
    "operator_frozen": (
        N_("A change to your account"),
        N_("Your account was frozen by our security team. Contact support to restore access."),
    ),
    "operator_unfrozen": (
        N_("A change to your account"),
        N_("Your account is active again. You can sign in."),
    ),
    "operator_unfrozen_reset": (
        N_("A change to your account"),
        N_("Your account is active again. To sign in, first reset your password (\"Forgot "
           "password\"): we text a code to your phone, then ask for your second factor. The old "
           "password may be known to someone else, so it no longer opens the account."),
    ),
    "operator_password_change": (
        N_("A change to your account"),
        N_("For your security you must choose a new password at your next sign-in."),
    ),
    "operator_factors_reset": (
        N_("A change to your account"),
        N_("Your second factors were reset by our security team. Sign in to set up a new one."),
    ),
    "incident_password_change": (
        N_("Please choose a new password"),
        N_("As a precaution after a security incident, every account must choose a new password. "
           "You will be asked for it at your next sign-in, after your second factor."),
    ),
}

FACTOR_NAMES: dict[str, str] = {
    "totp": N_("authenticator app"),
    "webauthn": N_("security key or passkey"),
    "recovery_code": N_("recovery code"),
}

DEVICE_TEXTS: dict[str, str] = {
    "browser_on_os": N_("{browser} on {os}"),
    "unknown_browser": N_("an unknown browser"),
    "unknown_os": N_("an unknown system"),
}


def locale_of(record: Mapping[str, Any] | None, default: str = i18n.SOURCE_LOCALE) -> str:
    """The language of an account (or registration) row; ``default`` when it has none."""
    locale = record.get("locale") if record is not None else None
    return locale if i18n.supported(locale) else default


def text(locale: str, msgid: str, **values: Any) -> str:
    """One catalogue text in ``locale`` with its ``{placeholders}`` filled in."""
    return i18n.translations(locale).gettext(msgid).format(**values)


def sms(locale: str, key: str, **values: Any) -> str:
    return text(locale, SMS[key], **values)


def email(locale: str, key: str, **values: Any) -> tuple[str, str]:
    """``(subject, body)``: splat it into ``Outbox.email(tx, to, *email(...))``."""
    subject, body = EMAIL[key]
    return text(locale, subject, **values), text(locale, body, **values)


def factor_name(locale: str, kind: str) -> str:
    return text(locale, FACTOR_NAMES.get(kind, FACTOR_NAMES["webauthn"]))


def device(locale: str, user_agent: str | None) -> str:
    """"Chrome on Windows" / "Windows の Chrome": families from a fixed list, never raw text."""
    parsed = useragent.describe(user_agent)
    return device_label(locale, parsed.browser, parsed.os)


def device_label(locale: str, browser: str | None, os: str | None) -> str:
    return text(
        locale, DEVICE_TEXTS["browser_on_os"],
        browser=browser or text(locale, DEVICE_TEXTS["unknown_browser"]),
        os=os or text(locale, DEVICE_TEXTS["unknown_os"]),
    )


def all_msgids() -> list[str]:
    """Every text of this module (the catalogue test checks each has its translations)."""
    ids = list(SMS.values()) + [t for pair in EMAIL.values() for t in pair]
    return ids + list(FACTOR_NAMES.values()) + list(DEVICE_TEXTS.values())
