"""The service container: every part of the service, built once by ``app.build_container``.

``create_app`` keeps it in ``app.extensions["authsvc"]``; request handlers reach it through
``api.container.container()``, typed, so the type checker sees every call the api layer makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .metrics import Metrics
from .services.accounts import AccountService
from .services.audit import AuditLog
from .services.clients import ClientService
from .services.contact_change import ContactChangeService
from .services.devices import KnownDevices
from .services.exemptions import TrustedPayees
from .services.factors import FactorService
from .services.hashing import GatedHasher
from .services.health import Health
from .services.keys import KeyService
from .services.login import LoginService
from .services.operators import AccountAdmin, Incidents
from .services.outbox import Outbox
from .services.passkey import PasskeyLogin
from .services.password_change import PasswordChangeService
from .services.password_reset import PasswordResetService
from .services.reencrypt import Reencryption
from .services.registration import RegistrationService
from .services.reports import ReportService
from .services.sessions import Sessions
from .services.sms_policy import SmsPolicy
from .services.step_up import StepUpService
from .services.throttle import Throttle
from .store import Store


@dataclass
class Container:
    """Everything a request handler may call; kept in ``app.extensions["authsvc"]``."""

    settings: Settings
    store: Store
    outbox: Outbox
    keys: KeyService
    registration: RegistrationService
    login: LoginService
    passkey: PasskeyLogin
    sessions: Sessions
    factors: FactorService
    step_up: StepUpService
    trusted_payees: TrustedPayees
    accounts: AccountService
    clients: ClientService
    reports: ReportService
    admin: AccountAdmin
    incidents: Incidents
    audit_log: AuditLog
    password_change: PasswordChangeService
    password_reset: PasswordResetService
    contact_change: ContactChangeService
    health: Health
    metrics: Metrics
    hasher: GatedHasher
    sms: SmsPolicy
    reencryption: Reencryption
    devices: KnownDevices
    throttle: Throttle
    limiter: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.audit_log.stop()
        self.outbox.stop()
        self.hasher.close()
        self.store.close()
