"""The rule language of SPEC §2 as pydantic models: the single source of truth.

The JSON Schema for editors is generated from these models (``funnelcast schema``). Every model
forbids unknown keys, every enum is closed, and no rule text is ever evaluated as code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    StrictInt,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from funnelcast.rules.durations import (
    CLOCK_PATTERN,
    DURATION_PATTERN,
    PERCENT_PATTERN,
    format_duration,
    format_percent,
    parse_clock,
    parse_duration,
    parse_percent,
)

ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
RFM_CODE_PATTERN = r"^[1-5]{3}$"

RuleId = Annotated[str, Field(pattern=ID_PATTERN, description="lower-case id: [a-z][a-z0-9_]{0,62}")]
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30m", "24h", "7d", "13w"]}),
]
Percent = Annotated[
    int,
    BeforeValidator(parse_percent),
    PlainSerializer(format_percent, return_type=str),
    WithJsonSchema({"type": "string", "pattern": PERCENT_PATTERN, "examples": ["10%"]}),
]
Clock = Annotated[
    time,
    BeforeValidator(parse_clock),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": CLOCK_PATTERN, "examples": ["09:00"]}),
]
Score = Annotated[int, Field(ge=1, le=5)]
Fraction01 = Annotated[float, Field(ge=0, le=1)]
Number = StrictInt | float
Scalar = str | StrictInt | float | bool | date | datetime


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    EXISTS = "exists"
    MISSING = "missing"
    WITHIN = "within"
    BEFORE = "before"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    KAKAO_ALIMTALK = "kakao_alimtalk"
    KAKAO_BRAND = "kakao_brand"
    WEBHOOK = "webhook"


class FunnelStage(StrEnum):
    ACQUISITION = "acquisition"
    ACTIVATION = "activation"
    RETENTION = "retention"
    REFERRAL = "referral"
    REVENUE = "revenue"


class Purpose(StrEnum):
    ADVERTISING = "advertising"
    INFORMATIONAL = "informational"


class Rule(BaseModel):
    """Base of every rule model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def check_op_value(op: Op, value: Any) -> None:
    """Raise ``ValueError`` when ``value`` does not fit ``op`` (shared by attributes and event fields)."""
    if op in {Op.EXISTS, Op.MISSING}:
        if value is not None:
            raise ValueError(f"op {op.value!r} takes no value")
    elif op in {Op.IN, Op.NOT_IN}:
        if not isinstance(value, list) or not value:
            raise ValueError(f"op {op.value!r} needs a non-empty list as value")
    elif op is Op.BETWEEN:
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError("op 'between' needs a list of exactly two values [low, high]")
        low, high = value
        try:
            if low > high:
                raise ValueError(f"between: low {low!r} is greater than high {high!r}")
        except TypeError as exc:
            raise ValueError(f"between: {low!r} and {high!r} cannot be compared") from exc
    elif op in {Op.WITHIN, Op.BEFORE}:
        parse_duration(value)
    elif value is None or isinstance(value, list):
        raise ValueError(f"op {op.value!r} needs one value")


class AttributeNode(Rule):
    """A customer column compared with a value (``within`` / ``before`` compare a timestamp to T)."""

    kind: ClassVar[str] = "attribute"
    attribute: str = Field(min_length=1)
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> AttributeNode:
        check_op_value(self.op, self.value)
        return self


class FieldCondition(Rule):
    """A condition on one event column, used in an event node's ``where``."""

    field: str = Field(min_length=1)
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> FieldCondition:
        check_op_value(self.op, self.value)
        return self


class Bound(Rule):
    """``{gte: 3}``-style bounds; every given comparison must hold."""

    eq: Number | None = None
    ne: Number | None = None
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Bound:
        if not self.comparisons():
            raise ValueError("a bound needs at least one of eq, ne, gt, gte, lt, lte")
        return self

    def comparisons(self) -> list[tuple[str, Number]]:
        """The given ``(op, threshold)`` pairs, in a fixed order."""
        return [
            (name, value)
            for name in ("eq", "ne", "gt", "gte", "lt", "lte")
            if (value := getattr(self, name)) is not None
        ]


class CountBound(Bound):
    eq: Annotated[StrictInt, Field(ge=0)] | None = None
    ne: Annotated[StrictInt, Field(ge=0)] | None = None
    gt: Annotated[StrictInt, Field(ge=0)] | None = None
    gte: Annotated[StrictInt, Field(ge=0)] | None = None
    lt: Annotated[StrictInt, Field(ge=0)] | None = None
    lte: Annotated[StrictInt, Field(ge=0)] | None = None


class ShareBound(Bound):
    """Bounds on a fraction in [0, 1]; compared exactly as rationals by the engine."""

    eq: Fraction01 | None = None
    ne: Fraction01 | None = None
    gt: Fraction01 | None = None
    gte: Fraction01 | None = None
    lt: Fraction01 | None = None
    lte: Fraction01 | None = None


class ShareSpec(ShareBound):
    """Among the counted events, the fraction that also match ``where``."""

    where: list[FieldCondition] = Field(min_length=1)


class TopShareSpec(ShareBound):
    """The most frequent value of ``field`` holds this share; exported as ``top_<field>``."""

    field: str = Field(min_length=1)


class NotFollowedBy(Rule):
    event: str = Field(min_length=1)
    after: Duration


class EventNode(Rule):
    """Events of one type (``"*"`` = any) in ``(T - within, T]``; every given constraint must hold."""

    kind: ClassVar[str] = "event"
    event: str = Field(min_length=1)
    within: Duration
    where: list[FieldCondition] = Field(default_factory=list)
    count: CountBound | None = None
    per: str | None = None
    sum: str | None = None
    value: Bound | None = None
    share: ShareSpec | None = None
    top_share: TopShareSpec | None = None
    not_followed_by: NotFollowedBy | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EventNode:
        if (self.sum is None) != (self.value is None):
            raise ValueError("'sum: FIELD' and 'value: {op: n}' go together")
        if self.per is not None and (self.sum or self.share or self.top_share or self.not_followed_by):
            raise ValueError("'per' combines only with 'count'")
        if self.not_followed_by is not None and self.not_followed_by.after >= self.within:
            raise ValueError("not_followed_by.after must be shorter than within")
        return self

    @property
    def effective_count(self) -> CountBound:
        """``count`` as written, or the default ``{gte: 1}``."""
        return self.count if self.count is not None else CountBound(gte=1)


class RfmSpec(Rule):
    r: list[Score] | None = Field(default=None, min_length=1)
    f: list[Score] | None = Field(default=None, min_length=1)
    m: list[Score] | None = Field(default=None, min_length=1)
    code: list[Annotated[str, Field(pattern=RFM_CODE_PATTERN)]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> RfmSpec:
        dims = [self.r, self.f, self.m]
        if self.code is not None and any(d is not None for d in dims):
            raise ValueError("rfm takes either 'code' or any of 'r', 'f', 'm', not both")
        if self.code is None and all(d is None for d in dims):
            raise ValueError("rfm needs 'code' or at least one of 'r', 'f', 'm'")
        return self


class RfmNode(Rule):
    kind: ClassVar[str] = "rfm"
    rfm: RfmSpec


class SegmentRefNode(Rule):
    kind: ClassVar[str] = "segment"
    segment: RuleId


class AllNode(Rule):
    kind: ClassVar[str] = "all"
    all: list[Node] = Field(min_length=1)


class AnyNode(Rule):
    kind: ClassVar[str] = "any"
    any: list[Node] = Field(min_length=1)


class NotNode(Rule):
    kind: ClassVar[str] = "not"
    not_: Node = Field(alias="not")


NODE_KEYS = ("all", "any", "not", "attribute", "event", "rfm", "segment")


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [key for key in NODE_KEYS if key in value]
        return present[0] if len(present) == 1 else None
    return getattr(value, "kind", None)


Node = Annotated[
    Annotated[AllNode, Tag("all")]
    | Annotated[AnyNode, Tag("any")]
    | Annotated[NotNode, Tag("not")]
    | Annotated[AttributeNode, Tag("attribute")]
    | Annotated[EventNode, Tag("event")]
    | Annotated[RfmNode, Tag("rfm")]
    | Annotated[SegmentRefNode, Tag("segment")],
    Discriminator(
        _node_kind,
        custom_error_type="condition_node",
        custom_error_message="a condition node needs exactly one of: all, any, not, attribute, event, rfm, segment",
    ),
]

for _model in (AllNode, AnyNode, NotNode):
    _model.model_rebuild()


def walk(node: Node) -> Iterator[Node]:
    """Every node of a condition tree, parents before children."""
    yield node
    if isinstance(node, AllNode):
        for child in node.all:
            yield from walk(child)
    elif isinstance(node, AnyNode):
        for child in node.any:
            yield from walk(child)
    elif isinstance(node, NotNode):
        yield from walk(node.not_)


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r} (for example Asia/Seoul)") from exc
    return name


TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]


class Segment(Rule):
    kind: Literal["segment"]
    id: RuleId
    name: str = Field(min_length=1)
    description: str = ""
    funnel_stage: FunnelStage | None = None
    where: Node


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/\-#LW]+$")
_RATE = re.compile(r"^(?P<n>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)$")


def check_cron(expression: str) -> str:
    """EventBridge Scheduler cron: six fields, one of day-of-month / day-of-week must be ``?``."""
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(
            "cron needs six fields 'minute hour day-of-month month day-of-week year', "
            f'e.g. "0 10 * * ? *"; got {len(fields)}'
        )
    for name, text in zip(("minute", "hour", "day-of-month", "month", "day-of-week", "year"), fields, strict=True):
        if not _CRON_FIELD.match(text):
            raise ValueError(f"cron {name} field {text!r} has characters EventBridge does not accept")
    minute, hour = fields[0], fields[1]
    for name, text, high in (("minute", minute, 59), ("hour", hour, 23)):
        for number in re.findall(r"\d+", text):
            if int(number) > high:
                raise ValueError(f"cron {name} {number} is out of range 0-{high}")
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ValueError("cron: exactly one of day-of-month and day-of-week must be '?'")
    return expression


def check_rate(expression: str) -> str:
    match = _RATE.match(expression)
    if not match:
        raise ValueError(f"rate must look like '1 hour' or '30 minutes', got {expression!r}")
    if (match["n"] == "1") != (not match["unit"].endswith("s")):
        raise ValueError(f"rate {expression!r}: use the singular unit for 1 and the plural otherwise")
    return expression


class Schedule(Rule):
    cron: Annotated[str, BeforeValidator(check_cron)] | None = None
    rate: Annotated[str, BeforeValidator(check_rate)] | None = None
    at: datetime | None = None
    timezone: TimeZoneName | None = None
    start: date | datetime | None = None
    end: date | datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        given = [name for name in ("cron", "rate", "at") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a schedule needs exactly one of cron, rate, at")
        if self.at is not None and self.at.tzinfo is not None:
            raise ValueError("'at' is a local time without offset; set 'timezone' instead")
        if self.start is not None and self.end is not None and _as_datetime(self.start) > _as_datetime(self.end):
            raise ValueError("schedule start is after its end")
        return self


def _as_datetime(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


class TimeWindow(Rule):
    """A daily local-time window; ``end`` before ``start`` wraps past midnight (21:00–08:00)."""

    start: Clock
    end: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("a time window needs different start and end")
        return self

    def contains(self, moment: time) -> bool:
        """Whether ``moment`` is in ``[start, end)``."""
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Message(Rule):
    """One channel's content. ``template`` is Liquid; the other keys are per-channel extras."""

    template: str = Field(min_length=1)
    subject: str | None = Field(default=None, description="email subject (Liquid); required for email")
    title: str | None = Field(default=None, description="push notification title (Liquid)")
    template_code: str | None = Field(default=None, description="registered Kakao AlimTalk template code")


class Variant(Rule):
    id: RuleId
    weight: Annotated[StrictInt, Field(ge=0)]
    messages: dict[Channel, Message] = Field(min_length=1)


class Campaign(Rule):
    kind: Literal["campaign"]
    id: RuleId
    name: str = Field(min_length=1)
    description: str = ""
    funnel_stage: FunnelStage
    audience: Node
    exclude: list[Node] = Field(default_factory=list)
    schedule: Schedule
    purpose: Purpose
    topic: RuleId | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=100)] = 50
    resend_after: Duration | None = None
    holdout: Percent = 0
    send_window: TimeWindow | None = None
    channels: list[Channel] = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)
    link: str | None = Field(default=None, description="URL offered to templates as {{ link }}")

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        problems: list[str] = []
        if len(set(self.channels)) != len(self.channels):
            problems.append("channels lists a channel twice")
        if Channel.KAKAO_ALIMTALK in self.channels and self.purpose is Purpose.ADVERTISING:
            problems.append("kakao_alimtalk never carries advertising: use kakao_brand or informational")
        ids = [variant.id for variant in self.variants]
        if len(set(ids)) != len(ids):
            problems.append(f"variant ids must be unique, got {ids}")
        if sum(variant.weight for variant in self.variants) <= 0:
            problems.append("variant weights must have a positive sum")
        for variant in self.variants:
            missing = [c.value for c in self.channels if c not in variant.messages]
            extra = [c.value for c in variant.messages if c not in self.channels]
            if missing:
                problems.append(f"variant {variant.id!r} has no message for channel(s) {', '.join(missing)}")
            if extra:
                problems.append(f"variant {variant.id!r} has messages for unlisted channel(s) {', '.join(extra)}")
            email = variant.messages.get(Channel.EMAIL)
            if email is not None and not email.subject:
                problems.append(f"variant {variant.id!r}: an email message needs a subject")
            alimtalk = variant.messages.get(Channel.KAKAO_ALIMTALK)
            if alimtalk is not None and not alimtalk.template_code:
                problems.append(f"variant {variant.id!r}: kakao_alimtalk needs its registered template_code")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class CapScope(StrEnum):
    DAY = "day"
    WEEK = "week"


class Cap(Rule):
    """At most ``max`` sends per local day or ISO week, optionally within a channel, topic or campaign."""

    max: Annotated[StrictInt, Field(ge=0)]
    per: CapScope
    channel: Channel | None = None
    topic: RuleId | None = None
    campaign: RuleId | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> Cap:
        if sum(x is not None for x in (self.channel, self.topic, self.campaign)) > 1:
            raise ValueError("a cap narrows to at most one of channel, topic, campaign")
        return self

    @property
    def name(self) -> str:
        """Stable name used in reason codes: ``day``, ``week:sms``, ``week:topic:promo``."""
        if self.channel is not None:
            return f"{self.per.value}:{self.channel.value}"
        if self.topic is not None:
            return f"{self.per.value}:topic:{self.topic}"
        if self.campaign is not None:
            return f"{self.per.value}:campaign:{self.campaign}"
        return self.per.value

    def applies(self, *, channel: str, topic: str | None, campaign: str) -> bool:
        if self.channel is not None:
            return self.channel.value == channel
        if self.topic is not None:
            return self.topic == topic
        if self.campaign is not None:
            return self.campaign == campaign
        return True


class IgnoredRule(Rule):
    after: Annotated[StrictInt, Field(ge=1)]
    topic_for: Duration


class NegativeRule(Rule):
    events: list[str] = Field(min_length=1)
    topic_for: Duration


class Suppression(Rule):
    unsubscribe: Literal["channel", "all"] = "channel"
    ignored: IgnoredRule | None = None
    negative: NegativeRule | None = None


class RfmPolicy(Rule):
    event: str = "purchase"
    amount_field: str = "amount"
    lookback: Duration = timedelta(days=365)


class Compliance(Rule):
    ad_label: str = "(광고)"
    opt_out_text: str = ""
    night_ban: TimeWindow | None = TimeWindow(start=time(21, 0), end=time(8, 0))


class Policy(Rule):
    kind: Literal["policy"]
    id: RuleId = "policy"
    default_timezone: TimeZoneName = "Asia/Seoul"
    caps: list[Cap] = Field(default_factory=list)
    suppression: Suppression = Suppression()
    rfm: RfmPolicy = RfmPolicy()
    compliance: Compliance = Compliance()
    attributes: list[str] = Field(
        default_factory=list,
        description="extra customer columns (beyond SPEC §1) that message templates may use",
    )

    @field_validator("caps")
    @classmethod
    def _unique_caps(cls, caps: list[Cap]) -> list[Cap]:
        names = [cap.name for cap in caps]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"caps repeat the same scope: {', '.join(duplicated)}")
        return caps


RuleFile = Annotated[Segment | Campaign | Policy, Field(discriminator="kind")]


class RuleFileModel(BaseModel):
    """Wrapper used to validate one file and to generate the JSON Schema of rule files."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    root: RuleFile


class RuleSet(Rule):
    """A whole, cross-checked rule set. Its canonical JSON and hash version every record."""

    segments: list[Segment] = Field(default_factory=list)
    campaigns: list[Campaign] = Field(default_factory=list)
    policy: Policy

    def segment(self, segment_id: str) -> Segment:
        for segment in self.segments:
            if segment.id == segment_id:
                return segment
        raise KeyError(segment_id)

    def campaign(self, campaign_id: str) -> Campaign:
        for campaign in self.campaigns:
            if campaign.id == campaign_id:
                return campaign
        raise KeyError(campaign_id)

    def canonical_json(self) -> bytes:
        """Key-sorted, whitespace-free UTF-8 JSON with segments and campaigns ordered by id."""
        ordered = self.model_copy(
            update={
                "segments": sorted(self.segments, key=lambda s: s.id),
                "campaigns": sorted(self.campaigns, key=lambda c: c.id),
            }
        )
        data = ordered.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def rules_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json()).hexdigest()[:16]

    @classmethod
    def from_bundle(cls, body: bytes) -> RuleSet:
        return cls.model_validate_json(body)
