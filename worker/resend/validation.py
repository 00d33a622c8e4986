"""What a resend request may contain, checked before anything is stored or queued."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from worker.core.errors import TangoResendError
from worker.tango.ids import REFERENCE_ORDER_ID

ETID = re.compile(r"E[0-9]{6}")
_MAX_EMAIL_LENGTH = 254


class InvalidResendRequest(TangoResendError, ValueError):
    """Raised when a resend request is refused at enqueue; `errors` maps each field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        details = "; ".join(f"{field}: {why}" for field, why in errors.items())
        super().__init__(f"invalid resend request: {details}")


class DeliveryMethod(StrEnum):
    EMAIL = "EMAIL"
    PHONE = "PHONE"
    NONE = "NONE"


def _reference_order_id(value: str) -> str:
    if not REFERENCE_ORDER_ID.fullmatch(value):
        raise ValueError("must look like RA180426-1401-64 (RA, 6 digits, -, digits, -, digits)")
    return value


def _email(value: str) -> str:
    if len(value) > _MAX_EMAIL_LENGTH or not value.isprintable():
        raise ValueError("is not a valid email address")
    try:
        # Deliverability would need DNS; syntax is what we can and must check offline.
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise ValueError("is not a valid email address") from None
    # Unicode domains (or punycode turned into Unicode) can pose as another: ASCII only.
    if not checked.normalized.isascii():
        raise ValueError("is not a valid email address (only ASCII addresses are accepted)")
    if len(checked.local_part.encode()) > 64:  # RFC 5321; Tango would refuse it later
        raise ValueError("is not a valid email address (the part before @ is too long)")
    return checked.normalized


def _mobile(value: str) -> str:
    if not re.fullmatch(r"\+[1-9][0-9]{7,14}", value):
        raise ValueError("must be a phone number in E.164 form, e.g. +14155550123")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a valid phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _etid(value: str) -> str:
    if not ETID.fullmatch(value):
        raise ValueError("must be a template id like E000000 (E and 6 digits)")
    return value


class ResendRequest(BaseModel):
    """A validated resend, in Tango's own field names."""

    # Only Tango's field names: what a webhook's schema allows is exactly what is accepted.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    reference_order_id: Annotated[
        str, Field(alias="referenceOrderID", max_length=40), AfterValidator(_reference_order_id)
    ]
    new_email: Annotated[
        str | None,
        Field(alias="newEmail"),
        AfterValidator(lambda v: None if v is None else _email(v)),
    ] = None
    new_mobile: Annotated[
        str | None,
        Field(alias="newMobile", max_length=32),
        AfterValidator(lambda v: None if v is None else _mobile(v)),
    ] = None
    new_etid: Annotated[
        str | None,
        Field(alias="newEtid", max_length=16),
        AfterValidator(lambda v: None if v is None else _etid(v)),
    ] = None
    new_delivery_method: Annotated[DeliveryMethod | None, Field(alias="newDeliveryMethod")] = None

    @field_validator("new_delivery_method", mode="before")
    @classmethod
    def _known_method(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or value not in DeliveryMethod.__members__:
            raise ValueError("must be one of EMAIL, PHONE, NONE")
        return DeliveryMethod(value)

    def tango_body(self) -> dict[str, str]:
        """The JSON body for Tango: only the fields the caller set, never nulls."""
        body = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        body.pop("referenceOrderID")
        return body


def validate_resend(fields: dict[str, Any]) -> ResendRequest:
    """Validate a request given in Tango's field names.

    Raises:
        InvalidResendRequest: naming every bad field; the values themselves are not echoed,
            since they may be a recipient's contact data.
    """
    try:
        return ResendRequest.model_validate(fields)
    except ValidationError as error:
        raise InvalidResendRequest(_errors_by_field(error)) from None


def _errors_by_field(error: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in error.errors(include_input=False, include_url=False):
        location = str(item["loc"][0]) if item["loc"] else "request"
        field = location  # Tango's own names: the model's aliases
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "is not a field of a resend request"
        elif item["type"] in {"string_type", "enum"} and field == "newDeliveryMethod":
            message = "must be one of EMAIL, PHONE, NONE"
        elif item["type"] == "missing" and field == "referenceOrderID":
            message = "is required: the order's id, e.g. RA180426-1401-64"
        elif item["type"] == "string_type":
            message = "must be text"
        errors.setdefault(field, message)
    return errors
