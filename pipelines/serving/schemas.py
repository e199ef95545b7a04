"""Request and response bodies of the serving API (they are also its OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_ID = 256
MAX_K = 1000
MAX_BATCH = 1000
MAX_SEEDS = 100
#: Raw ids: printable, no control characters (PostgreSQL text cannot hold NUL).
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"



def _json_integer(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0 are integers, "3" and true are not."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError(f"must be a JSON integer, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Rank = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_json_integer)]  # k, or a 1-based position
Source = Literal["model", "seed_items", "popularity"]
RawId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]


class Problem(BaseModel):
    """An error answer: what was wrong."""

    detail: str


class ModelRef(BaseModel):
    """The registered model version that answered."""

    name: str
    version: str
    family: str


class RecommendedItem(BaseModel):
    rank: int = Field(ge=1)
    item_id: str
    score: float
    explanation: str = Field(description="short reason shown with the item")
    because_item_id: str | None = Field(description="history or seed item the recommendation is closest to, if any")


class Recommendations(BaseModel):
    """Top items for one user, best first."""

    request_id: str = Field(description="quote it in POST /events to tie impressions and clicks to this answer")
    user_id: str
    source: Source = Field(description="model: a known user; seed_items: folded in from the seeds given; popularity: neither")
    model: ModelRef
    items: list[RecommendedItem]


# Request bodies accept exactly what the spec says, no lax parsing:
# "3" is not a k and 1700000000 is not a timestamp (ISO 8601 strings only).
class UserQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: RawId
    seed_items: list[RawId] = Field(default_factory=list, max_length=MAX_SEEDS,
                                    description="for a user the model does not know: items they chose (ignored for known users)")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: Rank = 10
    users: list[UserQuery] = Field(min_length=1, max_length=MAX_BATCH)


class BatchRecommendations(BaseModel):
    results: list[Recommendations]


class Event(BaseModel):
    """An impression (the item was shown) or a click, for monitoring and the next training run."""

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["impression", "click"]
    user_id: RawId
    item_id: RawId
    timestamp: datetime | None = Field(None, description="when it happened (default: when received); naive = UTC")
    request_id: str | None = Field(None, min_length=1, max_length=64, pattern=ID_PATTERN)
    position: Rank | None = Field(None, description="1-based rank at which the item was shown")
    model_version: str | None = Field(None, min_length=1, max_length=32, pattern=ID_PATTERN)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_string(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"timestamp must be an ISO 8601 string, got {type(value).__name__}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from exc


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


class EventAck(BaseModel):
    accepted: int


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    model: ModelRef | None = None
    reason: str | None = None
    registered_model: str
    alias: str

