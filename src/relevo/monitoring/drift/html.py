"""The drift report as one self-contained HTML page: the dataset verdict, the per-feature
table, and a reference-against-current bar chart per column as inline SVG.

No script, no font, no stylesheet or image from elsewhere: the page opens offline and can be
mailed or attached to a ticket as it is. Every text from the data is escaped.
"""

from __future__ import annotations

import math
from html import escape

from relevo.monitoring.drift.report import DriftReport, FeatureDrift

REFERENCE_COLOUR = "#9aa5b1"
CURRENT_COLOUR = "#2f6fde"
DRIFT_COLOUR = "#d64545"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;
color:#1f2933;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.muted{color:#616e7c}.verdict{padding:.8rem 1rem;border-radius:6px;margin:1rem 0;
font-weight:600}.drift{background:#fde8e8;color:#9b1c1c}.stable{background:#e3f9e5;
color:#05603a}table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e4e7eb}
th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#9b1c1c;font-weight:600}.na{color:#9aa5b1}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;
vertical-align:middle}
"""


def render(report: DriftReport, title: str | None = None) -> str:
    heading = title or _title(report)
    share = report.drifted_share
    drifted = report.drifted_features
    if math.isnan(share):
        verdict = ("stable", "No feature could be judged: too few values in the window.")
    elif report.dataset_drift:
        verdict = (
            "drift",
            f"Dataset drift: {len(drifted)} of {len(report.evaluable_features)} features "
            f"drifted ({share:.0%}, threshold {report.dataset_share:.0%}).",
        )
    else:
        verdict = (
            "stable",
            f"No dataset drift: {len(drifted)} of {len(report.evaluable_features)} features "
            f"drifted ({share:.0%}, threshold {report.dataset_share:.0%}).",
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(heading)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(heading)}</h1>",
        f'<p class="muted">{escape(_subtitle(report))}</p>',
        f'<div class="verdict {verdict[0]}">{escape(verdict[1])}</div>',
    ]
    if drifted:
        parts.append(f"<p>Drifted: <strong>{escape(', '.join(drifted))}</strong></p>")
    extra = [c for c in (report.prediction, report.multivariate) if c is not None]
    parts.append("<h2>Per column</h2>")
    parts.append(_table([*report.features, *extra]))
    parts.append(
        '<p class="legend muted">Shares of the values per reference bin or category:'
        f'<span style="background:{REFERENCE_COLOUR}"></span>{escape(_baseline(report))}'
        f'<span style="background:{CURRENT_COLOUR}"></span>current</p>'
    )
    for column in [*extra, *report.features]:
        parts.append(_card(column, _baseline(report)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _title(report: DriftReport) -> str:
    if report.deployment:
        return f"Drift of {report.deployment}"
    return "Drift report"


def _baseline(report: DriftReport) -> str:
    return {"previous": "previous window", "seasonal": "same hours a week earlier"}.get(
        report.baseline, "reference"
    )


def _subtitle(report: DriftReport) -> str:
    bits = []
    if report.model:
        bits.append(f"model {report.model}")
    if report.since is not None:
        until = report.until.isoformat(timespec="seconds") if report.until else "now"
        bits.append(f"window {report.since.isoformat(timespec='seconds')} to {until}")
    bits.append(
        f"{report.current_rows:,} rows against the {_baseline(report)} "
        f"({report.reference_rows:,} rows)"
    )
    return "; ".join(bits)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if math.isinf(value):
        return "inf"
    return f"{value:.4g}"


def _table(columns: list[FeatureDrift]) -> str:
    rows = [
        "<table><thead><tr><th>column</th><th>type</th><th>test</th><th>statistic</th>"
        "<th>p-value</th><th>threshold</th><th>drifted</th><th>rows</th><th>note</th></tr>"
        "</thead><tbody>"
    ]
    for c in columns:
        if not c.evaluable:
            verdict = '<span class="na">not evaluable</span>'
        else:
            verdict = '<span class="yes">yes</span>' if c.drifted else "no"
        rule = "p &lt; " if c.is_p_value else "&ge; "
        rows.append(
            f'<tr><td><a href="#col-{_anchor(c.feature)}">{escape(c.feature)}</a></td>'
            f"<td>{c.kind}</td><td>{escape(c.method)}</td>"
            f'<td class="num">{_fmt(c.statistic)}</td><td class="num">{_fmt(c.p_value)}</td>'
            f'<td class="num">{rule}{_fmt(c.threshold)}</td><td>{verdict}</td>'
            f'<td class="num">{c.current_rows:,}</td><td>{escape(c.note)}</td></tr>'
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _anchor(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _card(c: FeatureDrift, baseline: str) -> str:
    state = "not evaluable" if not c.evaluable else ("drifted" if c.drifted else "stable")
    colour = DRIFT_COLOUR if c.drifted else "#616e7c"
    stat = f"{c.method} {_fmt(c.statistic)}" if c.statistic is not None else c.method
    if c.p_value is not None:
        stat += f", p = {_fmt(c.p_value)}"
    return (
        f'<div class="card" id="col-{_anchor(c.feature)}"><h2>{escape(c.feature)} '
        f'<span style="color:{colour};font-size:.9rem">{state}</span></h2>'
        f'<p class="muted">{escape(stat)}; {escape(baseline)} {c.reference_rows:,} values, '
        f"current {c.current_rows:,}</p>{_svg(c)}</div>"
    )


def _svg(c: FeatureDrift, height: int = 220) -> str:
    """Grouped bars per bin: the baseline's share, then the current window's."""
    n = len(c.bins)
    if n == 0:
        return ""
    slot = max(28, min(70, 900 // n))
    width, top, bottom, left = slot * n + 60, 12, 70, 48
    plot = height - top - bottom
    peak = max([*c.reference_shares, *c.current_shares, 1e-9])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(c.feature)}: reference and current shares">'
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + plot * (1 - frac)
        out.append(
            f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#616e7c">{peak * frac:.0%}</text>'
        )
    bar = (slot - 8) / 2
    for i, (label, r, q) in enumerate(
        zip(c.bins, c.reference_shares, c.current_shares, strict=True)
    ):
        x = left + i * slot + 4
        for j, (share, colour) in enumerate(((r, REFERENCE_COLOUR), (q, CURRENT_COLOUR))):
            h = plot * share / peak
            out.append(
                f'<rect x="{x + j * bar:.1f}" y="{top + plot - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: '
                f"{'reference' if j == 0 else 'current'} {share:.1%}</title></rect>"
            )
        short = label if len(label) <= 18 else label[:17] + "…"
        cx, cy = x + slot / 2 - 4, top + plot + 10
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" fill="#3e4c59" '
            f'text-anchor="end" transform="rotate(-40 {cx:.1f} {cy:.1f})">{escape(short)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
