"""Self-contained HTML report: inline SVG drawn here, no scripts, no CDN, opens offline.

Read top to bottom, a marketer sees: the headline numbers, the message funnel with step rates and the
AARRR stages, which variants beat their holdout (95% CI whiskers), sends per day by outcome, and the
full KPI table last.
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from funnelcast.reporting.kpis import SMALL_GROUP

OUTCOME_COLOURS = {"sent": "#2e7d32", "capped": "#f9a825", "waited": "#1565c0", "suppressed": "#c62828"}
OUTCOME_LABELS = {
    "sent": "발송 sent",
    "capped": "한도 초과 capped",
    "waited": "대기 waited",
    "suppressed": "수신거부 suppressed",
}
STAGE_ORDER = ["acquisition", "activation", "retention", "referral", "revenue"]
STAGE_LABELS = {
    "acquisition": "획득 Acquisition",
    "activation": "활성화 Activation",
    "retention": "유지 Retention",
    "referral": "추천 Referral",
    "revenue": "수익 Revenue",
    "": "단계 미지정 (no stage)",
}
FONT = "font-family='Noto Sans CJK KR, Noto Sans KR, Apple SD Gothic Neo, Malgun Gothic, sans-serif'"
UP, DOWN, FLAT = "#2e7d32", "#c62828", "#757575"


def _svg(width: int, height: float, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height:.0f}' role='img' "
        f"aria-label='{escape(title)}' {FONT} font-size='12'>{''.join(body)}</svg>"
    )


def _total(kpis: pd.DataFrame, column: str) -> float:
    return float(kpis[column].sum()) if column in kpis and len(kpis) else 0.0


def _rate(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1%}" if denominator > 0 else "–"


def summary_cards(kpis: pd.DataFrame) -> str:
    """The headline numbers, as plain HTML boxes."""
    sent, delivered = _total(kpis, "sent"), _total(kpis, "delivered")
    clicked, converted, revenue = _total(kpis, "clicked"), _total(kpis, "converted"), _total(kpis, "revenue")
    campaigns = kpis["campaign_id"].nunique() if "campaign_id" in kpis else 0
    cards = [
        ("캠페인 campaigns", f"{campaigns:,}"),
        ("발송 sent", f"{sent:,.0f}"),
        ("도달률 delivered", _rate(delivered, sent)),
        ("클릭률 CTR", _rate(clicked, delivered or sent)),
        ("전환율 CVR", _rate(converted, sent)),
        ("매출 revenue", f"₩{revenue:,.0f}"),
    ]
    best = _best_lift(kpis)
    if best:
        cards.append(("최고 리프트 best lift", best))
    boxes = "".join(
        f"<div class='card'><div class='label'>{escape(label)}</div><div class='value'>{escape(value)}</div></div>"
        for label, value in cards
    )
    return f"<div class='cards'>{boxes}</div>"


def _best_lift(kpis: pd.DataFrame) -> str:
    if "lift" not in kpis:
        return ""
    rows = kpis.dropna(subset=["lift"]).drop_duplicates(["campaign_id", "variant_id"])
    if "holdout_n" in rows:
        rows = rows[(rows["treated_n"] >= SMALL_GROUP) & (rows["holdout_n"] >= SMALL_GROUP)]
    significant = rows[rows["lift_ci_low"] > 0]
    if significant.empty:
        return "유의한 리프트 없음 (none significant)"
    top = significant.sort_values("lift").iloc[-1]
    return f"{top['campaign_id']} / {top['variant_id']}: {top['lift'] * 100:+.1f}%p"


def funnel_svg(kpis: pd.DataFrame) -> str:
    """Centred bars audience -> sent -> delivered -> opened -> clicked -> converted, each with the share of
    the step before (all campaigns together)."""
    steps = ["audience", "sent", "delivered", "opened", "clicked", "converted"]
    labels = ["대상 audience", "발송 sent", "도달 delivered", "열람 opened", "클릭 clicked", "전환 converted"]
    values = [int(_total(kpis, s)) for s in steps]
    top = max(values) or 1
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        width = max(2.0, 420 * value / top)
        y = 6 + i * 36
        body.append(f"<text x='0' y='{y + 18}'>{escape(label)}</text>")
        body.append(
            f"<rect class='bar' x='{130 + (420 - width) / 2:.1f}' y='{y}' width='{width:.1f}' height='26' "
            f"rx='3' fill='#5e35b1' opacity='{1 - i * 0.1:.1f}'><title>{escape(label)}: {value:,}</title></rect>"
        )
        body.append(f"<text x='566' y='{y + 18}' font-weight='bold'>{value:,}</text>")
        if steps[i] == "converted":
            # Purchases are credited to sends, not only to clicks: compare with what was sent.
            body.append(f"<text x='640' y='{y + 18}' fill='#555'>{_rate(value, values[1])} of sent</text>")
        elif i:
            body.append(f"<text x='640' y='{y + 18}' fill='#555'>{_rate(value, values[i - 1])} of previous</text>")
    return _svg(760, 12 + len(steps) * 36, body, "funnel")


def stages_svg(kpis: pd.DataFrame) -> str:
    """One row per AARRR stage: sent and converted bars with CTR and CVR (stages without campaigns greyed)."""
    if "funnel_stage" not in kpis:
        return ""
    grouped = kpis.groupby(kpis["funnel_stage"].fillna("").astype(str))[["sent", "clicked", "converted"]].sum()
    named = [s for s in grouped.index if s]
    # Without rules (no stage known) the five empty stage rows would only add noise.
    stages = (STAGE_ORDER if named else []) + [s for s in grouped.index if s not in STAGE_ORDER]
    top = float(grouped["sent"].max()) if len(grouped) else 0.0
    body = []
    for i, stage in enumerate(stages):
        y = 6 + i * 30
        label = STAGE_LABELS.get(stage, stage)
        if stage not in grouped.index:
            body.append(
                f"<text x='0' y='{y + 16}' fill='#aaa'>{escape(label)}</text>"
                f"<text x='170' y='{y + 16}' fill='#aaa'>캠페인 없음 (no campaign)</text>"
            )
            continue
        sent, clicked, converted = (float(grouped.loc[stage, c]) for c in ("sent", "clicked", "converted"))
        width = 300 * sent / top if top else 0
        converted_width = 300 * converted / top if top else 0
        body.append(f"<text x='0' y='{y + 16}'>{escape(label)}</text>")
        body.append(
            f"<rect class='bar' x='170' y='{y + 2}' width='{width:.1f}' height='20' fill='#b39ddb'>"
            f"<title>{escape(label)} sent {sent:,.0f}</title></rect>"
        )
        body.append(
            f"<rect class='bar' x='170' y='{y + 2}' width='{converted_width:.1f}' height='20' fill='#4527a0'>"
            f"<title>{escape(label)} converted {converted:,.0f}</title></rect>"
        )
        body.append(
            f"<text x='480' y='{y + 16}'>발송 {sent:,.0f} · CTR {_rate(clicked, sent)} · "
            f"CVR {_rate(converted, sent)}</text>"
        )
    legend_y = 6 + len(stages) * 30 + 8
    body.append(
        f"<rect x='170' y='{legend_y}' width='10' height='10' fill='#b39ddb'/><text x='184' y='{legend_y + 9}'>"
        f"발송 sent</text><rect x='260' y='{legend_y}' width='10' height='10' fill='#4527a0'/>"
        f"<text x='274' y='{legend_y + 9}'>전환 converted</text>"
    )
    return _svg(760, legend_y + 18, body, "AARRR stages")


def lift_svg(kpis: pd.DataFrame) -> str:
    """Per campaign/variant: lift of the conversion rate over the holdout, with its 95% CI as a whisker."""
    cols = [
        "campaign_id",
        "variant_id",
        "treated_rate",
        "holdout_rate",
        "lift",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
        "treated_n",
        "holdout_n",
    ]
    if any(c not in kpis for c in cols):
        return "<p>No lift columns.</p>"
    rows = kpis[cols].dropna(subset=["treated_rate"]).drop_duplicates(["campaign_id", "variant_id"])
    if rows.empty:
        return "<p>No eligible users: nothing to compare.</p>"
    finite = [v for v in pd.concat([rows["lift_ci_low"], rows["lift_ci_high"], rows["lift"]]) if math.isfinite(v)]
    span = max([abs(v) for v in finite] + [0.01])
    half, centre = 160, 450
    scale = half / span
    height = 56 + 30 * len(rows)
    body = [
        f"<line x1='{centre}' y1='34' x2='{centre}' y2='{height - 4}' stroke='#333'/>",
        f"<text x='{centre}' y='30' text-anchor='middle'>0</text>",
        f"<text x='{centre - half}' y='30' text-anchor='middle' fill='#555'>{-span * 100:.1f}%p</text>",
        f"<text x='{centre + half}' y='30' text-anchor='middle' fill='#555'>+{span * 100:.1f}%p</text>",
        f"<line x1='{centre - half}' y1='34' x2='{centre + half}' y2='34' stroke='#ddd'/>",
        "<text x='0' y='12' font-weight='bold'>캠페인 / 변형</text>",
        "<text x='190' y='12' font-weight='bold'>전환율 vs 대조군</text>",
        f"<text x='{centre}' y='12' text-anchor='middle' font-weight='bold'>리프트 lift (%p)</text>",
        f"<text x='{centre + half + 16}' y='12' font-weight='bold'>리프트 [95% CI], p</text>",
    ]
    for i, row in enumerate(rows.itertuples(index=False)):
        y = 44 + i * 30
        body.append(f"<text x='0' y='{y + 14}'>{escape(str(row.campaign_id))} / {escape(str(row.variant_id))}</text>")
        versus = f"{row.treated_rate:.1%}" + (f" vs {row.holdout_rate:.1%}" if math.isfinite(row.holdout_rate) else "")
        body.append(f"<text x='190' y='{y + 14}'>{escape(versus)}</text>")
        if not math.isfinite(row.lift):
            body.append(f"<text x='{centre + 8}' y='{y + 14}' fill='{FLAT}'>대조군 없음 (no holdout)</text>")
            continue
        treated_n, holdout_n = int(row.treated_n), int(row.holdout_n)
        small = min(treated_n, holdout_n) < SMALL_GROUP
        # A tiny group makes the normal approximation unreliable: never colour it as a finding.
        colour = FLAT if small else UP if row.lift_ci_low > 0 else (DOWN if row.lift_ci_high < 0 else FLAT)
        x = centre + row.lift * scale
        x0, x1 = centre + row.lift_ci_low * scale, centre + row.lift_ci_high * scale
        tip = (
            f"lift {row.lift * 100:+.1f}%p (95% CI {row.lift_ci_low * 100:+.1f} .. {row.lift_ci_high * 100:+.1f}), "
            f"p={row.p_value:.3f}"
        )
        body.append(
            f"<rect class='bar' x='{min(centre, x):.1f}' y='{y + 3}' width='{max(abs(x - centre), 1):.1f}' "
            f"height='14' fill='{colour}' opacity='0.35'><title>{escape(tip)}</title></rect>"
        )
        body.append(
            f"<line class='ci' x1='{x0:.1f}' x2='{x1:.1f}' y1='{y + 10}' y2='{y + 10}' stroke='{colour}' "
            f"stroke-width='2'/><line x1='{x0:.1f}' x2='{x0:.1f}' y1='{y + 4}' y2='{y + 16}' "
            f"stroke='{colour}' stroke-width='2'/><line x1='{x1:.1f}' x2='{x1:.1f}' y1='{y + 4}' "
            f"y2='{y + 16}' stroke='{colour}' stroke-width='2'/>"
        )
        body.append(f"<circle cx='{x:.1f}' cy='{y + 10}' r='4' fill='{colour}'/>")
        text = (
            f"{row.lift * 100:+.1f}%p [{row.lift_ci_low * 100:+.1f}, {row.lift_ci_high * 100:+.1f}], "
            f"p={row.p_value:.2f}, n={treated_n:,}/{holdout_n:,}"
        )
        if small:
            text += " ※ 표본 작음 (small sample)"
        body.append(f"<text x='{centre + half + 16}' y='{y + 14}' fill='{colour}'>{escape(text)}</text>")
    return _svg(1160, height, body, "lift")


def daily_svg(daily: pd.DataFrame) -> str:
    """Stacked bars per day: sent / capped / waited / suppressed (``daily`` columns day + those)."""
    if daily.empty:
        return "<p>No decisions.</p>"
    totals = daily[list(OUTCOME_COLOURS)].sum(axis=1)
    top = float(totals.max()) or 1.0
    bar_width = max(8, min(60, 640 // len(daily)))
    left, base, chart = 56, 230.0, 200
    body = [f"<line x1='{left - 4}' y1='{base}' x2='{left + len(daily) * (bar_width + 6)}' y2='{base}' stroke='#999'/>"]
    for fraction in (0.5, 1.0):
        y = base - chart * fraction
        body.append(
            f"<line x1='{left - 4}' y1='{y:.1f}' x2='{left + len(daily) * (bar_width + 6)}' y2='{y:.1f}' "
            f"stroke='#eee'/><text x='{left - 8}' y='{y + 4:.1f}' text-anchor='end' fill='#555'>"
            f"{top * fraction:,.0f}</text>"
        )
    for i, row in enumerate(daily.itertuples(index=False)):
        x = left + i * (bar_width + 6)
        y = base
        for outcome, colour in OUTCOME_COLOURS.items():
            value = float(getattr(row, outcome))
            height = chart * value / top
            y -= height
            if value:
                body.append(
                    f"<rect class='bar' x='{x}' y='{y:.1f}' width='{bar_width}' height='{height:.1f}' "
                    f"fill='{colour}'><title>{row.day} {outcome}: {int(value):,}</title></rect>"
                )
        if len(daily) <= 31:
            body.append(
                f"<text x='{x + bar_width / 2}' y='{y - 4:.1f}' font-size='10' text-anchor='middle'>"
                f"{int(totals.iloc[i]):,}</text>"
            )
        if len(daily) <= 31 or i % 7 == 0:
            body.append(
                f"<text x='{x + bar_width / 2}' y='{base + 16}' font-size='10' text-anchor='middle'>"
                f"{escape(str(row.day)[5:])}</text>"
            )
    for j, (outcome, colour) in enumerate(OUTCOME_COLOURS.items()):
        body.append(
            f"<rect x='{left + j * 150}' y='{base + 30}' width='10' height='10' fill='{colour}'/>"
            f"<text x='{left + 14 + j * 150}' y='{base + 39}'>{escape(OUTCOME_LABELS[outcome])}</text>"
        )
    return _svg(max(680, left + 20 + len(daily) * (bar_width + 6)), base + 48, body, "daily")


def daily_outcomes(decisions: pd.DataFrame, deliveries: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day: sent (deliveries) and capped / waited / suppressed (decisions)."""
    decided = decisions.assign(day=pd.to_datetime(decisions["decided_at"], utc=True).dt.strftime("%Y-%m-%d"))
    frame = pd.DataFrame(
        {
            "capped": decided[decided["outcome"] == "capped"].groupby("day").size(),
            "waited": decided[decided["outcome"] == "waiting"].groupby("day").size(),
            "suppressed": decided[decided["outcome"] == "suppressed"].groupby("day").size(),
        }
    )
    if len(deliveries):
        sent = deliveries[deliveries["status"] == "sent"]
        days = pd.to_datetime(sent["sent_at"], utc=True).dt.strftime("%Y-%m-%d")
        frame = frame.join(sent.groupby(days).size().rename("sent"), how="outer")
    frame = frame.reindex(columns=list(OUTCOME_COLOURS)).fillna(0).astype(int)
    return frame.rename_axis("day").reset_index().sort_values("day")


TABLE_COLUMNS = [
    "campaign_id",
    "variant_id",
    "channel",
    "funnel_stage",
    "segment",
    "audience",
    "holdout",
    "sent",
    "delivered",
    "failed",
    "capped",
    "waited",
    "suppressed",
    "opened",
    "clicked",
    "converted",
    "ctr",
    "cvr",
    "revenue_per_recipient",
    "repurchase_rate",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "p_value",
]


def _cell(column: str, value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if column == "revenue_per_recipient":
            return f"₩{value:,.0f}"
        if column == "p_value":
            return f"{value:.3f}"
        if column.startswith("lift"):
            return f"{value * 100:+.1f}%p"
        if column in {"ctr", "cvr", "repurchase_rate"}:
            return f"{value:.1%}"
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "대조군 holdout" if column == "variant_id" and value == "(none)" else str(value)


def kpi_table_html(kpis: pd.DataFrame) -> str:
    present = [c for c in TABLE_COLUMNS if c in kpis]
    head = "".join(f"<th>{escape(c)}</th>" for c in present)
    rows = []
    for record in kpis[present].to_dict("records"):
        cells = "".join(f"<td>{escape(_cell(column, record[column]))}</td>" for column in present)
        rows.append(f"<tr>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


STYLE = """body{font-family:'Noto Sans CJK KR','Noto Sans KR','Apple SD Gothic Neo','Malgun Gothic',sans-serif;
margin:24px;color:#222;max-width:1240px}h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin:0 0 8px}
.note{color:#666;font-size:12px;margin:2px 0 10px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0 24px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}.card .label{color:#666;font-size:12px}
.card .value{font-size:22px;font-weight:bold}section{margin-bottom:28px}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;
white-space:nowrap}th{background:#f5f5f5}td:first-child,td:nth-child(2),td:nth-child(3),td:nth-child(4),
td:nth-child(5){text-align:left}"""


def render_report(kpis: pd.DataFrame, daily: pd.DataFrame, *, title: str) -> str:
    """The whole page as one string (UTF-8)."""
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1>
{summary_cards(kpis)}
<section id="funnel"><h2>AARRR 퍼널 (funnel)</h2>
<p class="note">모든 캠페인 합계. 오른쪽 비율은 바로 앞 단계 대비 (share of the step before).</p>
{funnel_svg(kpis)}
<h2>단계별 (by AARRR stage)</h2>{stages_svg(kpis)}</section>
<section id="lift"><h2>변형별 전환 리프트 (conversion lift vs holdout)</h2>
<p class="note">점 = 리프트 (처치군 전환율 − 대조군 전환율, %p), 선 = 95% 신뢰구간 (unpooled Wald),
p = 양측 two-proportion z-test, n = 처치군/대조군 인원. 초록 = 구간이 0보다 큼 (유의한 개선), 빨강 = 0보다 작음,
회색 = 판단 보류 (구간이 0을 포함하거나 한쪽 그룹이 30명 미만).</p>
{lift_svg(kpis)}</section>
<section id="daily"><h2>일별 발송 결과 (sends per day by outcome)</h2>{daily_svg(daily)}</section>
<section id="table"><h2>KPI 표 (per campaign, variant, channel)</h2>{kpi_table_html(kpis)}</section>
</body></html>
"""
