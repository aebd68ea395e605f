"""A performance report as one self-contained HTML page: the metric over time as inline SVG
(no script, no CDN: it opens offline), its interval, the estimate before labels, the
thresholds, and tables of windows, trends and worst segments."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from relevo.feedback.degradation import crossing_words

if TYPE_CHECKING:
    from relevo.feedback.report import ModelPerformance, PerformanceReport

_W, _H, _PAD = 640, 220, 40
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:right}th{background:#f4f4f4}.bad{color:#b00;font-weight:bold}.note{color:#666}"""


def render(report: PerformanceReport) -> str:
    """The report as an HTML page."""
    metric = next(iter(report.models[0].trends), None) if report.models else None
    metric = metric or {"binary": "roc_auc", "multiclass": "accuracy"}.get(report.task, "rmse")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Performance of "
        f"{escape(report.deployment)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Performance of {escape(report.deployment)}</h1>",
        f"<p class='note'>{escape(report.task)} model, windows of {escape(report.window)} by "
        f"prediction time, until {escape(report.until.isoformat(timespec='seconds'))}. A "
        f"window is mature {report.config.label_delay_days:g} days after its end, or once "
        f"{report.config.min_coverage:.0%} of it is labelled.</p>",
    ]
    for name in dict.fromkeys([metric, *report.config.thresholds]):
        parts.append(f"<h2>{escape(name)} over time</h2>")
        parts.append(_chart(report, name))
    if report.thresholds:
        parts.append("<h2>Business thresholds</h2>")
        rows = [
            [
                t.metric,
                f"{'>=' if t.higher_is_better else '<='} {t.threshold:g}",
                _num(t.value),
                t.window_start.date().isoformat() if t.window_start else "",
                {None: "not judged yet", True: "BREACHED", False: "met"}[t.breached],
            ]
            for t in report.thresholds
        ]
        parts.append(_table(["metric", "threshold", "value", "window", "verdict"], rows))
    for model in report.models:
        parts.append(_model(model, metric, report.until))
    parts.append("</body></html>")
    return "\n".join(parts)


def _model(model: ModelPerformance, metric: str, now: datetime) -> str:
    out = [f"<h2>{escape(model.model)} ({escape(model.role)})</h2>"]
    out.append(f"<p>{model.labelled:,} of {model.rows:,} predictions labelled.</p>")
    rows = []
    for w in model.windows:
        found = w.metrics.get(metric)
        est = w.estimated(metric)
        rows.append(
            [
                w.start.isoformat(timespec="minutes"),
                f"{w.rows:,}",
                f"{w.coverage:.0%}",
                _num(w.label_delay_hours, 3),
                "yes" if w.mature else "no",
                _num(found.value if found else None),
                _interval(found.low, found.high) if found else "",
                _num(est),
                "likely concept drift" if w.concept_drift else "",
            ]
        )
    out.append(
        _table(
            ["window", "rows", "labelled", "delay h", "mature", metric, "95% interval",
             "estimated", ""],
            rows,
        )
    )  # fmt: skip
    for name, trend in model.trends.items():
        crossing = crossing_words(trend, now)
        out.append(
            f"<p>Trend of {escape(name)}: {_num(trend.get('rate_per_week'))} per week "
            f"({_interval(trend.get('rate_low'), trend.get('rate_high'))})"
            + (f"; {escape(crossing)}" if crossing else "")
            + "</p>"
        )
    if model.calibration_check:
        out.append(f"<p class='note'>{escape(str(model.calibration_check.get('note', '')))}</p>")
    if model.segments:
        out.append("<h3>Worst segments</h3>")
        seg_rows = [
            [
                " and ".join(s.get("conditions", [])),
                f"{s.get('rows', 0):,}",
                _num(s.get("error")),
                _num(s.get("overall_error")),
                _num(s.get("p_value"), 3),
            ]
            for s in model.segments
        ]
        out.append(_table(["segment", "rows", "error", "overall", "p"], seg_rows))
    return "\n".join(out)


def _chart(report: PerformanceReport, metric: str) -> str:
    series = []
    for model in report.models:
        pts = [
            (w.start.timestamp(), w.metrics[metric], w.mature, w.estimated(metric))
            for w in model.windows
            if metric in w.metrics and w.metrics[metric].value is not None
        ]
        if pts:
            series.append((f"{model.model} ({model.role})", pts))
    if not series:
        return "<p class='note'>No labelled window yet.</p>"
    xs = [p[0] for _, pts in series for p in pts]
    ys: list[float] = []
    for _, pts in series:
        for _, found, _, est in pts:
            ys += [v for v in (found.value, found.low, found.high, est) if v is not None]
    limit = report.config.thresholds.get(metric)
    if limit is not None:
        ys.append(limit)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-6
    span = y1 - y0
    y0, y1 = y0 - 0.05 * span, y1 + 0.05 * span

    def sx(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD + (y - y0) / (y1 - y0) * (2 * _PAD - _H)

    svg = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' "
        f"viewBox='0 0 {_W} {_H}' role='img' aria-label='{escape(metric)} over time'>",
        f"<rect x='0' y='0' width='{_W}' height='{_H}' fill='white'/>",
        f"<text x='4' y='{sy(y1) + 4:.1f}' font-size='10'>{y1:.3f}</text>",
        f"<text x='4' y='{sy(y0):.1f}' font-size='10'>{y0:.3f}</text>",
    ]
    if limit is not None:
        svg.append(
            f"<line x1='{_PAD}' x2='{_W - _PAD}' y1='{sy(limit):.1f}' y2='{sy(limit):.1f}' "
            "stroke='#b00' stroke-dasharray='4 3'/>"
            f"<text x='{_W - _PAD + 2}' y='{sy(limit) + 3:.1f}' font-size='10' fill='#b00'>"
            f"{limit:g}</text>"
        )
    for k, (name, pts) in enumerate(series):
        color = _COLORS[k % len(_COLORS)]
        line = " ".join(f"{sx(x):.1f},{sy(f.value or 0.0):.1f}" for x, f, _, _ in pts)
        svg.append(f"<polyline points='{line}' fill='none' stroke='{color}' stroke-width='2'/>")
        for x, found, mature, est in pts:
            if found.low is not None and found.high is not None:
                svg.append(
                    f"<line x1='{sx(x):.1f}' x2='{sx(x):.1f}' y1='{sy(found.low):.1f}' "
                    f"y2='{sy(found.high):.1f}' stroke='{color}' opacity='.4'/>"
                )
            fill = color if mature else "white"
            value = found.value or 0.0  # the series holds only windows with a value
            svg.append(
                f"<circle cx='{sx(x):.1f}' cy='{sy(value):.1f}' r='3' fill='{fill}' "
                f"stroke='{color}'><title>{escape(name)}: {value:.4f}</title></circle>"
            )
            if est is not None:
                svg.append(
                    f"<rect x='{sx(x) - 2:.1f}' y='{sy(est) - 2:.1f}' width='4' height='4' "
                    f"fill='#888'><title>estimated {est:.4f}</title></rect>"
                )
        svg.append(
            f"<text x='{_PAD}' y='{14 + 12 * k}' font-size='11' fill='{color}'>"
            f"{escape(name)}</text>"
        )
    svg.append("</svg>")
    legend = (
        "<p class='note'>Filled dots: mature windows; hollow: labels still arriving; "
        "bars: 95% intervals; grey squares: estimated before labels; dashed: threshold.</p>"
    )
    return "".join(svg) + legend


def _table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>")
    return "\n".join(out) + "</table>"


def _num(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{float(value):.{digits}g}"


def _interval(low: Any, high: Any) -> str:
    return "" if low is None or high is None else f"{_num(low)} to {_num(high)}"
