"""The JSON shape of a resend request in Tango's own field names, shared by the webhook route
and the REST API, so both document (and refuse) exactly the same thing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ResendFields(BaseModel):
    """A resend request in Tango's field names.

    Field names are Tango's own, so senders can forward Tango-shaped payloads unchanged. The
    schema states the shapes `worker.resend.validation` enforces; validation checks more than a
    schema can say (a deliverable-looking email, a phone number that exists), and decides.
    """

    model_config = ConfigDict(extra="forbid")

    referenceOrderID: str = Field(
        examples=["RA180426-1401-64"], pattern=r"^RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}$"
    )
    newEmail: str | None = Field(default=None, examples=["pat@example.com"], max_length=254)
    newMobile: str | None = Field(
        default=None, examples=["+14155550123"], pattern=r"^\+[1-9][0-9]{7,14}$"
    )
    newEtid: str | None = Field(default=None, examples=["E000000"], pattern=r"^E[0-9]{6}$")
    newDeliveryMethod: Literal["EMAIL", "PHONE", "NONE"] | None = None
