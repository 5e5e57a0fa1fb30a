"""The service container: every part of the service, built once by ``app.build_container``.

``create_app`` keeps it in ``app.extensions["authsvc"]``; request handlers reach it through
``api.container.container()``, typed, so the type checker sees every call the api layer makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .metrics import Metrics
from .services.core.clients import ClientService
from .services.core.devices import KnownDevices
from .services.core.sessions import Sessions
from .services.core.sms_policy import SmsPolicy
from .services.core.throttle import Throttle
from .services.flows.accounts import AccountService
from .services.flows.contact_change import ContactChangeService
from .services.flows.exemptions import TrustedPayees
from .services.flows.factor_management import FactorService
from .services.flows.login import LoginService
from .services.flows.operators import AccountAdmin, Incidents
from .services.flows.passkey import PasskeyLogin
from .services.flows.password_change import PasswordChangeService
from .services.flows.password_reset import PasswordResetService
from .services.flows.registration import RegistrationService
from .services.flows.reports import ReportService
from .services.flows.step_up import StepUpService
from .services.platform.audit_log import AuditLog
from .services.platform.hashing import GatedHasher
from .services.platform.health import Health
from .services.platform.keys import KeyService
from .services.platform.outbox import Outbox
from .services.platform.reencrypt import Reencryption
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
