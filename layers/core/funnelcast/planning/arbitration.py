"""Priority arbitration: campaigns due in the same slot share each user's caps, highest priority first.

The planner plans every campaign due at the same scheduled minute in ONE pass, in the order
``(-priority, campaign id)``, against one bulk read of the cap table (the pending users' weeks in
batches of 100, never one read per user). A send that fits is counted into the user's state
before the next campaign is looked at, so a lower-priority campaign can only take what a higher
one left. A refusal is named:

* ``resend_after``: the campaign reached the user too recently (stored sends);
* ``capped:<cap>``: the stored sends alone already fill that cap;
* ``lower_priority``: the stored sends leave room, but a higher-priority campaign of this slot
  took it.

The check is :func:`funnelcast.caps.policy.first_refusing_cap`, the same rule the senders' atomic
``CapStore.reserve`` applies, so a user planned here is a user the reservation accepts unless
something else was sent in between (then the reservation refuses and the delivery says so: the
senders remain the guarantee).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from funnelcast.caps.policy import UserCapState, applicable_caps, first_refusing_cap
from funnelcast.planning.eligibility import PENDING, Evaluation
from funnelcast.rules.models import Campaign, Policy

RESEND_AFTER = "resend_after"


def priority_order(campaigns: Sequence[Campaign]) -> list[Campaign]:
    """Higher ``priority`` first; ties by campaign id (the same order on every run)."""
    return sorted(campaigns, key=lambda campaign: (-campaign.priority, campaign.id))


def _room_for_a_first_send(policy: Policy, campaign: Campaign) -> dict[str, bool]:
    """Per channel: whether a user with no usage at all passes every cap (no cap with ``max: 0``)."""
    return {
        channel.value: all(
            cap.max >= 1
            for cap in applicable_caps(policy, channel=channel.value, topic=campaign.topic, campaign_id=campaign.id)
        )
        for channel in campaign.channels
    }


def arbitrate(
    policy: Policy,
    evaluations: Sequence[Evaluation],
    usage: Mapping[Any, UserCapState],
) -> dict[str, int]:
    """Decide every ``pending`` row of ``evaluations`` in priority order, in place.

    Fitting rows become ``queued`` (window open at the reference time) or ``waiting`` with reason
    ``waiting:<until ISO UTC>``; the others ``resend_after``, ``capped`` or ``lower_priority``.
    Returns how many rows each campaign lost to a higher-priority one (``lower_priority:<id>``).

    Parameters
    ----------
    usage
        Stored cap state per user id (``CapStore.usage_of``); never modified.
    """
    planned: MutableMapping[Any, UserCapState] = {}
    ordered = sorted(evaluations, key=lambda e: (-e.context.campaign.priority, e.context.campaign.id))
    lost: dict[str, int] = {}
    for position, evaluation in enumerate(ordered):
        campaign = evaluation.context.campaign
        # Only users a later campaign of the slot still wants need this send counted now.
        contested = _pending_users(ordered[position + 1 :])
        frame = evaluation.frame
        rows = np.flatnonzero((frame["outcome"] == PENDING).to_numpy(dtype=bool))
        if rows.size == 0:
            continue
        easy = _room_for_a_first_send(policy, campaign)
        outcome = frame["outcome"].to_numpy(dtype=object).copy()
        reason = frame["reason"].to_numpy(dtype=object).copy()
        users = frame["user_id"].to_numpy(dtype=object)
        channels = frame["channel"].to_numpy(dtype=object).copy()
        waterfalls = frame["waterfall"].to_numpy(dtype=object).copy()
        days = frame["local_day"].to_numpy(dtype=object)
        opens = frame["not_before"].to_numpy(dtype=object)
        sends = frame["send_id"].to_numpy(dtype=object)
        reference = evaluation.context.reference
        for row in rows:
            user = users[row]
            channel = str(channels[row])
            stored = usage.get(user)
            state = planned.get(user, stored)
            fits = state is None and easy[channel]
            refusal: str | None = None
            if not fits:
                current = state if state is not None else UserCapState.empty(user)
                # The first channel of the waterfall that fits wins; a channel cap (``day:sms``)
                # must not cost the user a message another listed channel can still carry.
                for start, candidate in enumerate(waterfalls[row]):
                    found = _refusal(policy, campaign, current, candidate, days[row], opens[row])
                    if found is None:
                        channel, fits = candidate, True
                        if start:
                            channels[row], waterfalls[row] = candidate, tuple(waterfalls[row][start:])
                        break
                    refusal = refusal or found
                    if found == RESEND_AFTER:
                        break
            if fits:
                when: datetime = opens[row]
                if when <= reference:
                    outcome[row], reason[row] = "queued", "queued"
                else:
                    outcome[row], reason[row] = "waiting", f"waiting:{when.isoformat()}"
                if user in contested:
                    base = state if state is not None else UserCapState.empty(user)
                    planned[user] = base.with_send(
                        send_id=str(sends[row]),
                        channel=channel,
                        topic=campaign.topic,
                        campaign_id=campaign.id,
                        local_day=days[row],
                        sent_at=when,
                    )
                continue
            if refusal == RESEND_AFTER:
                outcome[row], reason[row] = "resend_after", RESEND_AFTER
                continue
            if user in planned:
                stored_state = stored or UserCapState.empty(user)
                stored_refusals = [
                    _refusal(policy, campaign, stored_state, candidate, days[row], opens[row])
                    for candidate in waterfalls[row]
                ]
                stored_refusal = stored_refusals[0]
                if None in stored_refusals:
                    outcome[row], reason[row] = "lower_priority", "lower_priority"
                    lost[campaign.id] = lost.get(campaign.id, 0) + 1
                    continue
                refusal = stored_refusal
            outcome[row], reason[row] = "capped", f"capped:{refusal}"
        frame["outcome"] = outcome
        frame["reason"] = reason
        frame["channel"] = channels
        frame["waterfall"] = waterfalls
    return lost


def _pending_users(evaluations: Sequence[Evaluation]) -> set[Any]:
    users: set[Any] = set()
    for evaluation in evaluations:
        frame = evaluation.frame
        users.update(frame.loc[(frame["outcome"] == PENDING).to_numpy(dtype=bool), "user_id"].tolist())
    return users


def _refusal(  # noqa: PLR0917
    policy: Policy, campaign: Campaign, state: UserCapState, channel: str, local_day: object, sent_at: object
) -> str | None:
    return first_refusing_cap(
        policy,
        state,
        channel=channel,
        topic=campaign.topic,
        campaign_id=campaign.id,
        local_day=local_day,  # type: ignore[arg-type]
        sent_at=sent_at,  # type: ignore[arg-type]
        resend_after=campaign.resend_after,
    )
