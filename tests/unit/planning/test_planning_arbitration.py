"""Priority arbitration against the cap usage snapshot (SPEC §3 'Priority', caps, resend_after)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from planning_builders import T, audience_of, make_campaign, make_features, make_policy

from funnelcast.caps.policy import UserCapState, exceeded_caps, first_refusing_cap, week_key
from funnelcast.ids import run_id
from funnelcast.planning.arbitration import arbitrate, priority_order
from funnelcast.planning.eligibility import PlanContext, evaluate_audience
from funnelcast.rules.models import Policy

DAY = date(2026, 12, 1)


def evaluations(policy: Policy, campaigns, features):
    return [evaluate_audience(PlanContext(c, policy, run_id(c.id, T), T), audience_of(features)) for c in campaigns]


def outcomes(evaluation) -> list[str]:
    return evaluation.frame["reason"].tolist()


def used(user: int, *sends: tuple[str, str, str | None], day: date = DAY, when=T) -> UserCapState:
    """A stored state with ``(campaign, channel, topic)`` sends on ``day``."""
    state = UserCapState.empty(user)
    for number, (campaign, channel, topic) in enumerate(sends):
        state = state.with_send(
            send_id=f"old{user}x{number}",
            channel=channel,
            topic=topic,
            campaign_id=campaign,
            local_day=day,
            sent_at=when,
        )
    return state


def test_higher_priority_wins_and_the_loser_says_lower_priority() -> None:
    # Given a one-message-a-day cap and two campaigns due in the same slot for the same users
    policy = make_policy([{"max": 1, "per": "day"}])
    low = make_campaign(id="low", priority=10)
    high = make_campaign(id="high", priority=90)
    planned = evaluations(policy, [low, high], make_features(3))
    # When arbitrated (whatever order they come in)
    lost = arbitrate(policy, planned, {})
    # Then the higher priority gets everyone, the lower one loses them to priority, not to a cap
    assert outcomes(planned[1]) == ["queued"] * 3
    assert outcomes(planned[0]) == ["lower_priority"] * 3
    assert lost == {"low": 3}


def test_ties_go_to_the_campaign_id_first_in_order() -> None:
    policy = make_policy([{"max": 1, "per": "day"}])
    campaigns = [make_campaign(id="zeta", priority=50), make_campaign(id="alpha", priority=50)]
    assert [c.id for c in priority_order(campaigns)] == ["alpha", "zeta"]
    planned = evaluations(policy, campaigns, make_features(1))
    arbitrate(policy, planned, {})
    assert (outcomes(planned[0]), outcomes(planned[1])) == (["lower_priority"], ["queued"])


def test_stored_usage_caps_resend_after_and_channel_fallback() -> None:
    # Given stored usage from the cap table's scan
    policy = make_policy([{"max": 2, "per": "day"}, {"max": 1, "per": "day", "channel": "kakao_brand"}])
    campaign = make_campaign(resend_after="7d")
    usage = {
        1: used(1, ("other", "sms", None), ("other2", "sms", None)),  # day full
        2: used(2, ("promo_a", "sms", "promo"), day=DAY - timedelta(days=3), when=T - timedelta(days=3)),
        3: used(3, ("other", "kakao_brand", None)),  # kakao_brand full, SMS free
        4: used(4, ("promo_a", "sms", "promo"), day=DAY - timedelta(days=8), when=T - timedelta(days=8)),
    }
    planned = evaluations(policy, [campaign], make_features(5))
    arbitrate(policy, planned, usage)
    frame = planned[0].frame.set_index("user_id")
    # Then
    assert frame.loc[1, "reason"] == "capped:day"
    assert frame.loc[2, "reason"] == "resend_after"
    assert (frame.loc[3, "reason"], frame.loc[3, "channel"], frame.loc[3, "waterfall"]) == ("queued", "sms", ("sms",))
    assert frame.loc[4, "reason"] == "queued"  # 8 days ago is past resend_after 7d
    assert frame.loc[5, "reason"] == "queued"


def test_a_cap_full_before_the_slot_is_capped_even_when_a_higher_campaign_also_planned() -> None:
    # Given a user already at the weekly topic cap, and two promo campaigns in the slot
    policy = make_policy([{"max": 1, "per": "week", "topic": "promo"}, {"max": 3, "per": "day"}])
    usage = {1: used(1, ("old", "sms", "promo"))}
    planned = evaluations(policy, [make_campaign(id="a1", priority=80), make_campaign(id="b1")], make_features(2))
    arbitrate(policy, planned, usage)
    # Then user 1 is capped for both (the cap table already refused), user 2 goes to the higher one
    assert outcomes(planned[0]) == ["capped:week:topic:promo", "queued"]
    assert outcomes(planned[1]) == ["capped:week:topic:promo", "lower_priority"]


def test_waiting_rows_keep_their_release_time() -> None:
    features = make_features(1, timezone=["America/New_York"])
    policy = make_policy()
    planned = evaluations(policy, [make_campaign(send_window={"start": "09:00", "end": "20:00"})], features)
    arbitrate(policy, planned, {})
    assert outcomes(planned[0]) == ["waiting:2026-12-01T14:00:00+00:00"]


caps_strategy = st.lists(
    st.sampled_from(
        [
            {"max": 1, "per": "day"},
            {"max": 2, "per": "day"},
            {"max": 3, "per": "week"},
            {"max": 1, "per": "day", "channel": "sms"},
            {"max": 1, "per": "week", "topic": "promo"},
            {"max": 0, "per": "day", "channel": "kakao_brand"},
        ]
    ),
    max_size=4,
    unique_by=lambda cap: (cap["per"], cap.get("channel"), cap.get("topic")),
)


@settings(max_examples=40, deadline=None)
@given(
    caps=caps_strategy,
    priorities=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=4),
    topics=st.lists(st.sampled_from(["promo", "cart", None]), min_size=4, max_size=4),
    history=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["sms", "kakao_brand"])), max_size=10),
)
def test_planned_sends_never_exceed_a_cap_and_priority_is_respected(caps, priorities, topics, history) -> None:
    # Given any caps, stored history and campaigns of any priorities
    policy = make_policy(caps)
    usage: dict[object, UserCapState] = {}
    for number, (user, channel) in enumerate(history):
        state = usage.get(user, UserCapState.empty(user))
        refusal = first_refusing_cap(
            policy, state, channel=channel, topic=None, campaign_id="old", local_day=DAY, sent_at=T, resend_after=None
        )
        if refusal is not None:
            continue  # the cap table never holds more than the caps allow
        usage[user] = state.with_send(
            send_id=f"h{number}", channel=channel, topic=None, campaign_id="old", local_day=DAY, sent_at=T
        )
    campaigns = [make_campaign(id=f"c{i}", priority=p, topic=topics[i]) for i, p in enumerate(priorities)]
    planned = evaluations(policy, campaigns, make_features(6))
    # When arbitrated
    arbitrate(policy, planned, usage)
    # Then stored + planned sends stay within every cap
    totals = dict(usage)
    for evaluation in sorted(planned, key=lambda e: (-e.context.campaign.priority, e.context.campaign.id)):
        frame = evaluation.frame
        columns = (frame["user_id"], frame["reason"], frame["channel"], frame["send_id"])
        for user, reason, channel, sid in zip(*columns, strict=True):
            if reason == "queued":
                state = totals.get(user, UserCapState.empty(user))
                totals[user] = state.with_send(
                    send_id=sid,
                    channel=channel,
                    topic=evaluation.context.campaign.topic,
                    campaign_id=evaluation.context.campaign.id,
                    local_day=DAY,
                    sent_at=T,
                )
    for state in totals.values():
        assert exceeded_caps(policy, state.week(week_key(DAY)), [DAY.isoweekday()]) == []
    # And a campaign only ever loses to priority when a strictly earlier one in the order got that user
    order = sorted(planned, key=lambda e: (-e.context.campaign.priority, e.context.campaign.id))
    for position, evaluation in enumerate(order):
        frame = evaluation.frame
        for user in frame.loc[frame["reason"] == "lower_priority", "user_id"]:
            earlier = [e.frame.set_index("user_id").loc[user, "reason"] for e in order[:position]]
            assert "queued" in earlier
