"""Store normalised feedback as JSONL and read the log back de-duplicated (event_id, at rebuild time)."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta

import pandas as pd

from funnelcast.errors import DataContractError
from funnelcast.feedback.normalize import IMPLIED_PREFIX, PROVIDER_ID_PREFIX, FeedbackEvent, implied_event_id
from funnelcast.storage import ObjectStore

EVENTS_PREFIX = "feedback/events/"
UNKNOWN_PREFIX = "feedback/unknown/"
EVENT_COLUMNS = ["event_id", "send_id", "type", "ts", "channel", "user_id"]


def write_events(store: ObjectStore, events: list[FeedbackEvent], *, batch_id: str) -> list[str]:
    """One object per day touched: ``feedback/events/dt=<day>/<batch_id>.jsonl``. Returns the keys."""
    by_day: dict[str, list[str]] = {}
    for event in events:
        by_day.setdefault(event.ts.date().isoformat(), []).append(event.model_dump_json())
    keys = []
    for day, lines in sorted(by_day.items()):
        key = f"{EVENTS_PREFIX}dt={day}/{batch_id}.jsonl"
        store.put_bytes(key, ("\n".join(lines) + "\n").encode())
        keys.append(key)
    return keys


_DAY = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")
DELIVERY_COLUMNS = [
    "send_id",
    "run_id",
    "campaign_id",
    "user_id",
    "variant_id",
    "channel",
    "status",
    "reason",
    "sent_at",
    "local_sent_at",
    "purpose",
    "topic",
]
# Read as text, never inferred (pyarrow would turn ISO strings into naive timestamps); user_id stays as written.
_DELIVERY_TEXT = [c for c in DELIVERY_COLUMNS if c != "user_id"] + [
    "provider_message_id",
    "rules_hash",
    "fallback_from",
]
_EVENT_TEXT = EVENT_COLUMNS


def isin(values: pd.Series, candidates: pd.Series | list[str]) -> pd.Series:
    """``values.isin(candidates)`` compared as text, through Arrow's hash set: pandas' own ``isin`` on
    Arrow-backed strings takes ~1 s for 65k x 50k ids, this takes ~10 ms."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    value_set = pa.array(pd.Series(candidates, dtype=object).astype(str).to_numpy(dtype=object), pa.string())
    hits = pc.is_in(pa.array(values.astype(str).to_numpy(dtype=object), pa.string()), value_set=value_set)
    return pd.Series(hits.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def _keys(store: ObjectStore, prefix: str, since: date | None) -> list[str]:
    keys = []
    for key in store.list_keys(prefix):
        day = _DAY.search(key)
        if key.endswith(".jsonl") and (since is None or day is None or date.fromisoformat(day.group(1)) >= since):
            keys.append(key)
    return keys


def _lines(store: ObjectStore, key: str, body: bytes) -> list[dict[str, object]]:
    """The slow path: one ``json.loads`` per line, naming the line that is not JSON."""
    rows: list[dict[str, object]] = []
    for number, line in enumerate(body.decode().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DataContractError(f"{store.uri(key)}:{number}: not JSON: {exc}") from exc
    return rows


def _read_jsonl(store: ObjectStore, prefix: str, since: date | None, text: list[str]) -> pd.DataFrame:
    """Every ``*.jsonl`` under ``prefix`` as one frame (``dt=`` partitions before ``since`` skipped).

    Parsed in bulk by Arrow (a suppression rebuild reads the whole log); a file Arrow refuses (a bad
    line, an id that is a number on one line and text on another) goes through :func:`_lines`.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.json as pajson  # noqa: PLC0415

    options = pajson.ParseOptions(
        explicit_schema=pa.schema([(c, pa.string()) for c in text]), unexpected_field_behavior="infer"
    )
    bodies = [(key, store.get_bytes(key)) for key in _keys(store, prefix, since)]
    bodies = [(key, body) for key, body in bodies if body.strip()]
    if not bodies:
        return pd.DataFrame()
    try:
        # One parse for the whole log: every object shares the schema (and ends lines with "\n").
        joined = b"\n".join(body.rstrip(b"\n") for _, body in bodies) + b"\n"
        return pajson.read_json(io.BytesIO(joined), parse_options=options).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    frames = []
    for key, body in bodies:
        try:
            frames.append(pajson.read_json(io.BytesIO(body), parse_options=options).to_pandas())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            frames.append(pd.DataFrame(_lines(store, key, body)))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_events(store: ObjectStore, since: date | None = None) -> pd.DataFrame:
    """Every stored event once (first by event_id), implied deliveries added, ``ts`` as UTC.

    ``since`` skips ``dt=`` partitions (event days) before it.
    """
    frame = _read_jsonl(store, EVENTS_PREFIX, since, _EVENT_TEXT)
    if frame.empty:
        return events_frame([])
    missing = [c for c in ("event_id", "send_id", "type", "ts") if c not in frame]
    if missing:
        raise DataContractError(f"{store.uri(EVENTS_PREFIX)}: events without {', '.join(missing)}")
    frame = frame.reindex(columns=EVENT_COLUMNS).drop_duplicates("event_id").reset_index(drop=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return _with_implied(frame)


def _with_implied(frame: pd.DataFrame) -> pd.DataFrame:
    """Out-of-order arrival: an open/click without a delivery implies one, at the first such reaction."""
    delivered = frame.loc[frame["type"] == "delivered", "send_id"]
    reactions = frame[frame["type"].isin(["opened", "clicked"]) & ~isin(frame["send_id"], delivered)]
    if reactions.empty:
        return frame
    first = reactions.sort_values("ts", kind="stable").drop_duplicates("send_id")
    implied = first.assign(type="delivered", event_id=[implied_event_id(str(s)) for s in first["send_id"]])
    return pd.concat([frame, implied], ignore_index=True)


def events_frame(events: list[FeedbackEvent]) -> pd.DataFrame:
    frame = pd.DataFrame([e.model_dump(mode="json") for e in events], columns=EVENT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame.drop_duplicates("event_id").reset_index(drop=True)


def read_deliveries(store: ObjectStore, since: date | None = None) -> pd.DataFrame:
    """All ``deliveries/dt=*/*.jsonl`` rows (``DeliveryRecord``), ``sent_at`` as UTC; ``since`` prunes days."""
    frame = _read_jsonl(store, "deliveries/", since, _DELIVERY_TEXT)
    if frame.empty:
        return pd.DataFrame(columns=DELIVERY_COLUMNS)
    missing = [c for c in ("send_id", "user_id", "channel", "status", "sent_at") if c not in frame]
    if missing:
        raise DataContractError(f"{store.uri('deliveries/')}: delivery records without {', '.join(missing)}")
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True, format="ISO8601")
    return frame


def find_deliveries(store: ObjectStore, send_ids: set[str], *, newest: date, days: int) -> pd.DataFrame:
    """The delivery records of ``send_ids`` (or ``provider:<id>``), newest day first, stopping once all are found.

    The immediate path of an unsubscribe: reactions come soon after the message, so this reads a
    day or two of deliveries instead of the whole log. Looks back at most ``days`` days.
    """
    frames: list[pd.DataFrame] = []
    remaining = set(send_ids)
    for offset in range(days + 1):
        if not remaining:
            break
        frame = _read_jsonl(store, f"deliveries/dt={newest - timedelta(days=offset)}/", None, _DELIVERY_TEXT)
        if frame.empty:
            continue
        frames.append(frame)
        remaining -= set(frame["send_id"].astype(str))
        if "provider_message_id" in frame:
            remaining -= {PROVIDER_ID_PREFIX + str(v) for v in frame["provider_message_id"].dropna()}
    if not frames:
        return pd.DataFrame(columns=DELIVERY_COLUMNS)
    found = pd.concat(frames, ignore_index=True)
    found["sent_at"] = pd.to_datetime(found["sent_at"], utc=True, format="ISO8601")
    return found


UNKNOWN_KEY = f"{UNKNOWN_PREFIX}latest.jsonl"


def resolve_provider_ids(events: pd.DataFrame, deliveries: pd.DataFrame) -> pd.DataFrame:
    """Replace ``provider:<message id>`` send ids by the send id whose delivery has that provider id."""
    by_provider = events["send_id"].astype(str).str.startswith(PROVIDER_ID_PREFIX)
    if not by_provider.any() or "provider_message_id" not in deliveries:
        return events
    known = deliveries.dropna(subset=["provider_message_id"])
    mapping = dict(zip(PROVIDER_ID_PREFIX + known["provider_message_id"].astype(str), known["send_id"], strict=True))
    resolved = events.copy()
    resolved.loc[by_provider, "send_id"] = resolved.loc[by_provider, "send_id"].map(
        lambda value: mapping.get(str(value), value)
    )
    return resolved


def set_aside_unknown(store: ObjectStore, events: pd.DataFrame, deliveries: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Split off events whose send id no delivery record knows; return the known ones and the count
    of received events among them (deliveries implied by an open are not counted twice).

    The unknown ones are written to ``feedback/unknown/latest.jsonl`` (replaced on every rebuild, removed
    when none are left): they stay in the event log too, so a delivery record that lands late (the
    sender writes it after the provider answered) makes them count on the next rebuild.
    """
    events = resolve_provider_ids(events, deliveries)
    known = deliveries["send_id"] if len(deliveries) else []
    unknown_mask = ~isin(events["send_id"], known)
    unknown = events[unknown_mask]
    if len(unknown):
        buffer = io.StringIO()
        unknown.assign(ts=unknown["ts"].map(lambda t: t.isoformat())).to_json(
            buffer, orient="records", lines=True, force_ascii=False
        )
        store.put_bytes(UNKNOWN_KEY, buffer.getvalue().encode())
    elif store.exists(UNKNOWN_KEY):
        store.delete(UNKNOWN_KEY)
    received = ~unknown["event_id"].astype(str).str.startswith(IMPLIED_PREFIX)
    return events[~unknown_mask].reset_index(drop=True), int(received.sum())
