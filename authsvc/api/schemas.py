"""Request models: strict (no coercion), unknown fields refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Email = Annotated[str, StringConstraints(min_length=3, max_length=254)]
Phone = Annotated[str, StringConstraints(min_length=2, max_length=20)]
# Long enough for any password the policy accepts after NFKC; the policy gives the exact rule.
Password = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Code6 = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
Token = Annotated[str, StringConstraints(min_length=16, max_length=512, pattern=r"^[A-Za-z0-9_\-.]+$")]


class RegistrationIn(Strict):
    email: Email
    phone: Phone
    password: Password


class RegistrationVerifyIn(Strict):
    phone_code: Code6
    email_code: Code6
