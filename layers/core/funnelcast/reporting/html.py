"""Self-contained HTML report: inline SVG drawn here, no scripts, no CDN, opens offline."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

OUTCOME_COLOURS = {"sent": "#2e7d32", "capped": "#f9a825", "waited": "#1565c0", "suppressed": "#c62828"}
STAGE_ORDER = ["acquisition", "activation", "retention", "referral", "revenue"]
FONT = "font-family='Noto Sans CJK KR, Apple SD Gothic Neo, Malgun Gothic, sans-serif'"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{escape(title)}' {FONT} font-size='12'>{''.join(body)}</svg>"
    )


def funnel_svg(kpis: pd.DataFrame) -> str:
    """Horizontal bars: audience -> sent -> delivered -> opened -> clicked -> converted (all campaigns)."""
    steps = ["audience", "sent", "delivered", "opened", "clicked", "converted"]
    labels = ["대상 audience", "발송 sent", "도달 delivered", "열람 opened", "클릭 clicked", "전환 converted"]
    values = [int(kpis[s].sum()) if s in kpis else 0 for s in steps]
    top = max(values) or 1
    body = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        width = 420 * value / top
        y = 10 + i * 34
        body.append(f"<text x='0' y='{y + 18}'>{escape(label)}</text>")
        body.append(
            f"<rect class='bar' x='{150 + (420 - width) / 2:.1f}' y='{y}' width='{width:.1f}' "
            f"height='26' fill='#5e35b1'><title>{escape(label)}: {value}</title></rect>"
        )
        body.append(f"<text x='{590}' y='{y + 18}'>{value:,}</text>")
    return _svg(660, 10 + len(steps) * 34, body, "funnel")


def lift_svg(kpis: pd.DataFrame) -> str:
    """Per campaign/variant treated conversion rate with its lift 95% CI bar against the holdout."""
    cols = ["campaign_id", "variant_id", "treated_rate", "holdout_rate", "lift", "lift_ci_low", "lift_ci_high"]
    rows = kpis[cols].dropna(subset=["treated_rate"]).drop_duplicates(["campaign_id", "variant_id"])
    if rows.empty:
        return "<p>No eligible users: nothing to compare.</p>"
    finite = [v for v in pd.concat([rows["lift_ci_low"], rows["lift_ci_high"], rows["lift"]]) if math.isfinite(v)]
    span = max([abs(v) for v in finite] + [0.01])
    scale = 220 / span
    centre = 430
    body = [
        f"<line x1='{centre}' y1='0' x2='{centre}' y2='{20 + 30 * len(rows)}' stroke='#999'/>",
        f"<text x='{centre - 220}' y='12'>-{span:.1%}</text><text x='{centre + 180}' y='12'>+{span:.1%}</text>",
    ]
    for i, row in enumerate(rows.itertuples(index=False)):
        y = 24 + i * 30
        label = f"{row.campaign_id} / {row.variant_id}: {row.treated_rate:.1%}"
        if math.isfinite(row.holdout_rate):
            label += f" vs {row.holdout_rate:.1%}"
        body.append(f"<text x='0' y='{y + 14}'>{escape(label)}</text>")
        if math.isfinite(row.lift):
            x = centre + row.lift * scale
            x0, x1 = centre + row.lift_ci_low * scale, centre + row.lift_ci_high * scale
            colour = "#2e7d32" if row.lift_ci_low > 0 else ("#c62828" if row.lift_ci_high < 0 else "#757575")
            body.append(
                f"<rect class='bar' x='{min(centre, x):.1f}' y='{y + 4}' width='{abs(x - centre):.1f}' "
                f"height='12' fill='{colour}' opacity='0.5'><title>lift {row.lift:+.2%} "
                f"(95% CI {row.lift_ci_low:+.2%} .. {row.lift_ci_high:+.2%})</title></rect>"
            )
            body.append(
                f"<line class='ci' x1='{x0:.1f}' x2='{x1:.1f}' y1='{y + 10}' y2='{y + 10}' "
                f"stroke='{colour}' stroke-width='2'/>"
            )
        else:
            body.append(f"<text x='{centre + 6}' y='{y + 14}' fill='#757575'>no holdout</text>")
    return _svg(680, 30 + 30 * len(rows), body, "lift")


def daily_svg(daily: pd.DataFrame) -> str:
    """Stacked bars per day: sent / capped / waited / suppressed (``daily`` columns day + those)."""
    if daily.empty:
        return "<p>No decisions.</p>"
    totals = daily[list(OUTCOME_COLOURS)].sum(axis=1)
    top = float(totals.max()) or 1.0
    bar_width = max(8, min(60, 560 // len(daily)))
    body = []
    for i, row in enumerate(daily.itertuples(index=False)):
        x = 40 + i * (bar_width + 6)
        y = 220.0
        for outcome, colour in OUTCOME_COLOURS.items():
            value = float(getattr(row, outcome))
            height = 200 * value / top
            y -= height
            if value:
                body.append(
                    f"<rect class='bar' x='{x}' y='{y:.1f}' width='{bar_width}' height='{height:.1f}' "
                    f"fill='{colour}'><title>{row.day} {outcome}: {int(value)}</title></rect>"
                )
        body.append(f"<text x='{x}' y='236' font-size='10'>{escape(str(row.day)[5:])}</text>")
    for j, (outcome, colour) in enumerate(OUTCOME_COLOURS.items()):
        body.append(
            f"<rect x='{40 + j * 110}' y='248' width='10' height='10' fill='{colour}'/>"
            f"<text x='{54 + j * 110}' y='257'>{outcome}</text>"
        )
    return _svg(max(480, 60 + len(daily) * (bar_width + 6)), 266, body, "daily")


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


def kpi_table_html(kpis: pd.DataFrame) -> str:
    columns = [
        "campaign_id",
        "variant_id",
        "channel",
        "funnel_stage",
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
        "lift",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
    ]
    present = [c for c in columns if c in kpis]
    head = "".join(f"<th>{escape(c)}</th>" for c in present)
    rows = []
    for record in kpis[present].to_dict("records"):
        cells = []
        for column in present:
            value = record[column]
            if isinstance(value, float):
                text = (
                    ""
                    if not math.isfinite(value)
                    else (
                        f"{value:,.0f}"
                        if column == "revenue_per_recipient"
                        else f"{value:.4f}"
                        if column == "p_value"
                        else f"{value:+.2%}"
                        if column.startswith("lift")
                        else f"{value:.2%}"
                    )
                )
            else:
                text = str(value)
            cells.append(f"<td>{escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_report(kpis: pd.DataFrame, daily: pd.DataFrame, *, title: str) -> str:
    """The whole page as one string (UTF-8)."""
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:'Noto Sans CJK KR','Apple SD Gothic Neo','Malgun Gothic',sans-serif;margin:24px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}
section{{margin-bottom:28px}}</style></head><body>
<h1>{escape(title)}</h1>
<section id="funnel"><h2>AARRR 퍼널 (funnel)</h2>{funnel_svg(kpis)}</section>
<section id="lift"><h2>변형별 전환 리프트 (lift vs holdout, 95% CI, unpooled Wald)</h2>{lift_svg(kpis)}</section>
<section id="daily"><h2>일별 발송 결과 (sends per day by outcome)</h2>{daily_svg(daily)}</section>
<section id="table"><h2>KPI</h2>{kpi_table_html(kpis)}</section>
</body></html>
"""
