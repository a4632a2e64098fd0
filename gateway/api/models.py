"""Pydantic models of the subscriber and operator API (the boundary only: handlers turn them
into `gateway.policy.Policy` values at once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.api.auth import SUBSCRIBER_ID_PATTERN
from gateway.policy import Policy

MAX_LIST = 1000
MESSAGE_ID_PATTERN = r"^[^\x00-\x1f\x7f/\\]{1,128}$"
Entry = Annotated[str, StringConstraints(min_length=1, max_length=254,
                                         pattern=r"^[^\x00-\x1f\x7f]+$")]
EntryList = Annotated[list[Entry], Field(max_length=MAX_LIST)]
Weights = Annotated[dict[Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")],
                         Annotated[float, Field(ge=-1000, le=1000)]], Field(max_length=500)]
SubscriberId = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                                pattern=SUBSCRIBER_ID_PATTERN)]

_FIELD_DOCS: dict[str, str] = {
    "protection": "fraud protection on (default) or off",
    "strength": "how eagerly messages are blocked: low, standard (default) or high",
    "block_international": "block SMS from international senders",
    "block_url_unknown_senders": "block SMS with URLs from senders not in the address list",
    "block_spoofed": "block sender IDs that impersonate a registered brand",
    "honour_dmarc": "apply the sender domain's DMARC policy to email",
    "youth": "youth profile: stricter thresholds, adult and dating categories blocked",
    "on_block": "what happens to a blocked message: quarantine (default, recoverable) or drop",
    "allow": "numbers, sender IDs, domains or addresses always let through",
    "block": "numbers, sender IDs, domains or addresses always blocked",
    "contacts": "the subscriber's address list (numbers, addresses)",
    "weights": "per-symbol weight overrides",
}


class PolicySettings(BaseModel):
    """A subscriber's settings (PUT: the whole set; absent fields take the defaults)."""

    model_config = ConfigDict(extra="forbid")

    protection: bool = Field(True, description=_FIELD_DOCS["protection"])
    strength: Literal["low", "standard", "high"] = Field("standard",
                                                         description=_FIELD_DOCS["strength"])
    block_international: bool = Field(False, description=_FIELD_DOCS["block_international"])
    block_url_unknown_senders: bool = Field(False,
                                            description=_FIELD_DOCS["block_url_unknown_senders"])
    block_spoofed: bool = Field(True, description=_FIELD_DOCS["block_spoofed"])
    honour_dmarc: bool = Field(True, description=_FIELD_DOCS["honour_dmarc"])
    youth: bool = Field(False, description=_FIELD_DOCS["youth"])
    on_block: Literal["quarantine", "drop"] = Field("quarantine",
                                                    description=_FIELD_DOCS["on_block"])
    allow: EntryList = Field(default_factory=list, description=_FIELD_DOCS["allow"])
    block: EntryList = Field(default_factory=list, description=_FIELD_DOCS["block"])
    contacts: EntryList = Field(default_factory=list, description=_FIELD_DOCS["contacts"])
    weights: Weights = Field(default_factory=dict, description=_FIELD_DOCS["weights"])


class PolicyPatch(BaseModel):
    """Only the fields given change (lists and weights are replaced as a whole)."""

    model_config = ConfigDict(extra="forbid")

    protection: bool | None = None
    strength: Literal["low", "standard", "high"] | None = None
    block_international: bool | None = None
    block_url_unknown_senders: bool | None = None
    block_spoofed: bool | None = None
    honour_dmarc: bool | None = None
    youth: bool | None = None
    on_block: Literal["quarantine", "drop"] | None = None
    allow: EntryList | None = None
    block: EntryList | None = None
    contacts: EntryList | None = None
    weights: Weights | None = None


class PolicyOut(PolicySettings):
    model_config = ConfigDict(extra="forbid")

    subscriber: str
    is_default: bool = Field(description="true while the subscriber never changed anything")
    version: str = Field(description="digest of the settings ('default' for the default profile)")
    updated_at: float | None = Field(None, description="unix time of the last change")

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        d = policy.to_json()
        d["subscriber"] = policy.subscriber or ""
        d["is_default"] = policy.is_default
        d["version"] = policy.version
        d["updated_at"] = policy.updated_at or None
        return cls.model_validate(d)


class PolicyImportRow(PolicySettings):
    """One line of an operator import: a subscriber id and the whole settings set."""

    subscriber: SubscriberId


class Reason(BaseModel):
    symbol: str
    score: float
    description: str
    options: list[str]


class QuarantineItem(BaseModel):
    message_id: str
    channel: Literal["sms", "email"]
    sender: str
    preview: str = Field(description="SMS text or email subject, shortened")
    received_at: float
    stored_at: float
    expires_at: float = Field(description="unix time after which it is purged")
    action: str
    score: float
    reasons: list[Reason] = Field(description="why it was blocked, strongest first")
    status: Literal["held", "releasing", "released"]
    released_at: float | None = None


class QuarantineList(BaseModel):
    items: list[QuarantineItem]
    next_before: float | None = Field(None, description="pass as `before` for the next page")
    retention_days: float


class ReleaseResult(BaseModel):
    message_id: str
    status: Literal["released"]
    redelivered: bool = Field(description="true when the message was handed on for delivery")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Literal["fraud", "not_fraud"] = Field(description="this was fraud / this was not fraud")
    message_id: Annotated[str, StringConstraints(min_length=1, max_length=128,
                                                 pattern=MESSAGE_ID_PATTERN)] | None = None
    consent: bool = Field(False, description="the content may be used for retraining")
    content: Annotated[str, StringConstraints(max_length=10_000)] | None = Field(
        None, description="the message text, kept only with consent")
    comment: Annotated[str, StringConstraints(max_length=1000)] | None = None


class FeedbackOut(BaseModel):
    id: int
    label: str
    consent: bool
    content_kept: bool


class AuditRecord(BaseModel):
    id: int
    at: float = Field(description="unix time of the change")
    actor: str = Field(description="subscriber:<id> or key:<label>")
    subscriber: str
    action: str = Field(description="policy.put, policy.patch, policy.import, quarantine.release")
    changes: dict[str, Any] = Field(description="{field: {old, new}}; lists as hashed {added, removed}")


class ImportResult(BaseModel):
    received: int
    changed: int
    unchanged: int
    errors: list[dict[str, Any]]
    dry_run: bool
