"""Store normalised feedback as JSONL and read the log back de-duplicated (event_id, at rebuild time)."""

from __future__ import annotations

import io
import json
import re
from datetime import date

import pandas as pd

from funnelcast.errors import DataContractError
from funnelcast.feedback.normalize import IMPLIED_PREFIX, FeedbackEvent, fill_implied
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


def _read_jsonl(store: ObjectStore, prefix: str, since: date | None = None) -> list[dict[str, object]]:
    """Rows of every ``*.jsonl`` under ``prefix``; with ``since``, only ``dt=`` partitions from that day on."""
    rows: list[dict[str, object]] = []
    for key in store.list_keys(prefix):
        if not key.endswith(".jsonl"):
            continue
        day = _DAY.search(key)
        if since is not None and day is not None and date.fromisoformat(day.group(1)) < since:
            continue
        for number, line in enumerate(store.get_bytes(key).decode().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataContractError(f"{store.uri(key)}:{number}: not JSON: {exc}") from exc
    return rows


def read_events(store: ObjectStore, since: date | None = None) -> pd.DataFrame:
    """Every stored event once (first by event_id), implied deliveries added, ``ts`` as UTC.

    ``since`` skips ``dt=`` partitions (event days) before it.
    """
    events = [FeedbackEvent.model_validate(row) for row in _read_jsonl(store, EVENTS_PREFIX, since)]
    unique = list({e.event_id: e for e in reversed(events)}.values())
    return events_frame(fill_implied(unique))


def events_frame(events: list[FeedbackEvent]) -> pd.DataFrame:
    frame = pd.DataFrame([e.model_dump(mode="json") for e in events], columns=EVENT_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame.drop_duplicates("event_id").reset_index(drop=True)


def read_deliveries(store: ObjectStore, since: date | None = None) -> pd.DataFrame:
    """All ``deliveries/dt=*/*.jsonl`` rows (``DeliveryRecord``), ``sent_at`` as UTC; ``since`` prunes days."""
    frame = pd.DataFrame(_read_jsonl(store, "deliveries/", since))
    if frame.empty:
        return pd.DataFrame(
            columns=[
                "send_id",
                "campaign_id",
                "user_id",
                "variant_id",
                "channel",
                "status",
                "sent_at",
                "topic",
                "purpose",
            ]
        )
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True, format="ISO8601")
    return frame


UNKNOWN_KEY = f"{UNKNOWN_PREFIX}latest.jsonl"


def set_aside_unknown(store: ObjectStore, events: pd.DataFrame, deliveries: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Split off events whose send id no delivery record knows; return the known ones and the count
    of received events among them (deliveries implied by an open are not counted twice).

    The unknown ones are written to ``feedback/unknown/latest.jsonl`` (replaced on every rebuild, removed
    when none are left): they stay in the event log too, so a delivery record that lands late (the
    sender writes it after the provider answered) makes them count on the next rebuild.
    """
    known = set(deliveries["send_id"].astype(str)) if len(deliveries) else set()
    unknown_mask = ~events["send_id"].astype(str).isin(known)
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
