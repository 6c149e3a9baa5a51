"""Durations (``30m``, ``24h``, ``7d``, ``13w``), percentages (``10%``) and clock times (``09:00``)."""

from __future__ import annotations

import re
from datetime import time, timedelta

DURATION_PATTERN = r"^[1-9][0-9]{0,5}(m|h|d|w)$"
PERCENT_PATTERN = r"^(100|[0-9]{1,2})(\.[0-9]{1,2})?%$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: object) -> timedelta:
    """``"7d"`` → ``timedelta(days=7)``; anything else raises ``ValueError`` with the expected form."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"expected a duration such as 30m, 24h, 7d or 13w, got {text!r}")
    return int(text[:-1]) * _UNITS[text[-1]]


def format_duration(value: timedelta) -> str:
    """The shortest exact text for ``value`` (inverse of :func:`parse_duration`)."""
    minutes = int(value.total_seconds()) // 60
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def parse_percent(text: object) -> int:
    """``"10%"`` → 1000 basis points (integers keep holdout splits exact)."""
    if isinstance(text, bool) or not isinstance(text, str) or not re.fullmatch(PERCENT_PATTERN, text):
        raise ValueError(f"expected a percentage such as 10% or 2.5%, got {text!r}")
    whole, _, frac = text[:-1].partition(".")
    basis_points = int(whole) * 100 + int((frac + "00")[:2])
    if basis_points > 10_000:
        raise ValueError(f"a percentage is at most 100%, got {text!r}")
    return basis_points


def format_percent(basis_points: int) -> str:
    whole, frac = divmod(basis_points, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0") + "%"


def parse_clock(text: object) -> time:
    """``"09:00"`` → ``time(9, 0)``."""
    if isinstance(text, time):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        # YAML 1.1 reads an unquoted 09:00 as the sexagesimal integer 540.
        hours, minutes = divmod(text, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
    if not isinstance(text, str) or not re.fullmatch(CLOCK_PATTERN, text):
        raise ValueError(f'expected a local time such as "09:00", got {text!r}')
    hours_text, minutes_text = text.split(":")
    return time(int(hours_text), int(minutes_text))
