"""authsvc/policy.py holds every rule's numbers; the settings give each service its slice."""

import dataclasses

from authsvc import policy
from authsvc.config import Settings


def test_settings_defaults_are_the_policy_defaults():
    s = Settings()
    assert s.one_time == policy.ONE_TIME
    assert s.throttle_rules == policy.THROTTLE
    assert s.sms_caps == policy.SMS
    assert s.hash_gate == policy.HASH_GATE
    assert s.lifetimes == policy.LIFETIMES
    assert s.exemption_cooldown == policy.EXEMPTIONS.cooldown


def test_slices_carry_the_settings_in_force_and_keep_the_fixed_numbers():
    s = Settings().replace(code_ttl=120, throttle_window=60, throttle_email_failures=3, sms_hourly_cap=7,
                           sms_country_hourly_cap=6, hash_known_budget=1.5, session_idle_timeout=900)
    assert s.one_time.code_ttl == 120 and s.one_time.max_attempts == policy.ONE_TIME.max_attempts
    assert (s.throttle_rules.window, s.throttle_rules.email_failures) == (60, 3)
    assert s.throttle_rules.attack_divisor == policy.THROTTLE.attack_divisor
    assert (s.sms_caps.total, s.sms_caps.country) == (7, 6)
    assert s.sms_caps.reset_per_client == policy.SMS.reset_per_client
    assert s.hash_gate.known_budget == 1.5
    assert s.lifetimes.session_idle_timeout == 900


def test_the_documented_rules():
    # The numbers the README and the API guide state; changing one is a change of the rules.
    assert policy.ONE_TIME.max_attempts == 5
    lock = policy.FACTOR_LOCK
    assert (lock.failures, lock.window, lock.first_lock, lock.max_lock) == (10, 900, 60, 3600)
    assert lock.first_lock * 2 ** lock.max_doublings >= lock.max_lock  # the doubling reaches the cap
    t = policy.THROTTLE
    assert (t.window, t.client_failures, t.network_failures, t.email_failures, t.device_failures) == (
        900, 20, 100, 10, 10)
    assert (t.first_wait, t.email_max_wait, t.attack_failures_per_minute, t.attack_divisor) == (60, 3600, 300, 4)
    assert (policy.SMS.reset_per_account, policy.SMS.reset_per_client, policy.SMS.registration_per_phone) == (3, 2, 5)


def test_every_policy_is_frozen():
    for value in (policy.ONE_TIME, policy.FACTOR_LOCK, policy.THROTTLE, policy.SMS, policy.HASH_GATE,
                  policy.LIFETIMES, policy.EXEMPTIONS):
        assert dataclasses.is_dataclass(value)
        field = dataclasses.fields(value)[0].name
        try:
            setattr(value, field, 0)
        except dataclasses.FrozenInstanceError:
            continue
        raise AssertionError(f"{type(value).__name__} is not frozen")
