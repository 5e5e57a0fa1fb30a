"""Request models: strict (no coercion), unknown fields refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Email = Annotated[str, StringConstraints(min_length=3, max_length=254)]
Phone = Annotated[str, StringConstraints(min_length=2, max_length=20)]
# Long enough for any password the policy accepts after NFKC; the policy gives the exact rule.
Password = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Code6 = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
Token = Annotated[str, StringConstraints(min_length=16, max_length=512, pattern=r"^[A-Za-z0-9_\-.]+$")]


Locale = Literal["en", "ja"]


class RegistrationIn(Strict):
    email: Email
    phone: Phone
    password: Password
    locale: Locale | None = None


class RegistrationVerifyIn(Strict):
    phone_code: Code6
    email_code: Code6


Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
FactorCode = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class LoginIn(Strict):
    email: Email
    password: Password
    login_pass: Token | None = None  # the sign-in pass from a "many failed sign-ins" notice


class FactorAnswerIn(Strict):
    """An answer to a second-factor challenge: a code (TOTP, recovery code, SMS) or a WebAuthn
    assertion. The field the method needs is required (``null`` is no answer: a 400 naming the
    field, never counted as a wrong answer); the other one must be absent or null."""

    method: Literal["totp", "webauthn", "recovery_code"]
    code: FactorCode | None = Field(default=None, validate_default=True)
    credential: dict[str, Any] | None = Field(default=None, validate_default=True)

    @field_validator("code", "credential")
    @classmethod
    def _fields_of_the_method(cls, value: object, info: ValidationInfo) -> object:
        method = info.data.get("method")
        if method is None:  # the method itself was refused; that error is reported
            return value
        needed = "credential" if method in ("webauthn", "spc") else "code"
        if info.field_name == needed and value is None:
            raise PydanticCustomError("missing", "required for method {method}", {"method": method})
        if info.field_name != needed and value is not None:
            raise PydanticCustomError("not_for_method", "not used with method {method}", {"method": method})
        return value


class MfaIn(FactorAnswerIn):
    mfa_token: Token
    # the field is redeclared wider than FactorAnswerIn's, which pydantic allows
    method: Literal["totp", "webauthn", "recovery_code", "sms"]  # type: ignore[assignment]  # sms: accounts without a factor


class RefreshIn(Strict):
    refresh_token: Token


class TotpBeginIn(Strict):
    name: Name | None = None


class TotpConfirmIn(Strict):
    code: Code6


class WebauthnOptionsIn(Strict):
    passkey: bool = False  # a discoverable credential for passkey sign-in
    payment: bool = False  # a payment credential (Secure Payment Confirmation)


class WebauthnAddIn(Strict):
    credential: dict[str, Any]
    name: Name | None = None


class EmptyIn(Strict):
    pass


class PasskeyLoginIn(Strict):
    challenge_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    credential: dict[str, Any]


class AccountPatchIn(Strict):
    password_login: bool | None = None  # needs step-up factor.remove
    locale: Locale | None = None


class IntrospectIn(Strict):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    # RFC 7009 section 4.1.2 values; only access tokens are introspected (others: inactive).
    token_type_hint: Literal["access_token", "refresh_token"] | None = None


class TransactionIn(Strict):
    amount: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    payee: Annotated[str, StringConstraints(min_length=1, max_length=256)]


Action = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class StepUpIn(Strict):
    action: Action
    transaction: TransactionIn | None = None
    recurring: bool = False
    allow_exemption: bool = True


class TrustedPayeeIn(Strict):
    payee: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class StepUpVerifyIn(FactorAnswerIn):
    """``spc``: a Secure Payment Confirmation assertion (``payment.get``) in ``credential``."""

    method: Literal["totp", "webauthn", "recovery_code", "spc"]  # type: ignore[assignment]  # wider than the base


class RedeemIn(Strict):
    step_up_token: Token
    action: Action
    transaction: TransactionIn | None = None


class PasswordChangeIn(Strict):
    password_change_token: Token
    new_password: Password


class ReportIn(Strict):
    report_token: Token


class PasswordResetIn(Strict):
    email: Email


class ResetSmsIn(Strict):
    code: Code6


ResetFactorIn = FactorAnswerIn


class ResetCompleteIn(Strict):
    reset_token: Token
    new_password: Password


class PhoneChangeIn(Strict):
    phone: Phone


class EmailChangeIn(Strict):
    email: Email


class CodeIn(Strict):
    code: Code6
