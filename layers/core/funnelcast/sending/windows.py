"""When a late recipient may be sent next: the send window and night ban in the user's time zone (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from funnelcast.rules.models import Campaign, Compliance, Purpose

_SEARCH_HORIZON = timedelta(days=2)
_STEP = timedelta(minutes=1)


def allowed_at(moment: datetime, campaign: Campaign, compliance: Compliance, tz: ZoneInfo, night_consent: bool) -> bool:
    """Whether ``moment`` (aware) is inside the campaign's send window and outside the night ban."""
    local = moment.astimezone(tz).time()
    if campaign.send_window is not None and not campaign.send_window.contains(local):
        return False
    night_ban = compliance.night_ban
    banned = campaign.purpose is Purpose.ADVERTISING and not night_consent and night_ban is not None
    return not (banned and night_ban is not None and night_ban.contains(local))


def next_window(
    now: datetime, campaign: Campaign, compliance: Compliance, tz: ZoneInfo, night_consent: bool
) -> tuple[datetime, datetime] | None:
    """``(opens, closes)`` of the next allowed interval from ``now``; ``None`` if none within 2 days."""
    start = now.replace(second=0, microsecond=0)
    moment = start
    while moment < start + _SEARCH_HORIZON:
        if allowed_at(moment, campaign, compliance, tz, night_consent):
            close = moment + _STEP
            while close < moment + _SEARCH_HORIZON and allowed_at(close, campaign, compliance, tz, night_consent):
                close += _STEP
            return max(moment, now), close
        moment += _STEP
    return None
