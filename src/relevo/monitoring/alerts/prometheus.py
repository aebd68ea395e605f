"""`relevo alerts rules --prometheus`: Prometheus alerting rules equivalent to relevo's, for
teams that route alerts through Alertmanager. One rule per relevo rule reads the
`relevo_alert_firing` gauge (relevo has judged persistence already, so `for` only outlasts a
scrape); two more watch the raw serving metrics, for when the evaluator itself is down."""

from __future__ import annotations

from collections.abc import Sequence

from relevo.monitoring.alerts.rules import Rule


def _name(rule: str) -> str:
    return "Relevo" + "".join(part.capitalize() for part in rule.split("_"))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prometheus_rules(rules: Sequence[Rule], interval_s: float = 60.0) -> str:
    """The rules as a Prometheus rule file (YAML text)."""
    hold = f"{max(1, round(2 * interval_s / 60))}m"
    lines = ["groups:", "  - name: relevo", "    rules:"]

    def add(alert: str, expr: str, for_: str, severity: str, summary: str) -> None:
        lines.extend(
            [
                f"      - alert: {alert}",
                f"        expr: {expr}",
                f"        for: {for_}",
                "        labels:",
                f"          severity: {severity}",
                "        annotations:",
                f"          summary: {_quote(summary)}",
            ]
        )

    for rule in rules:
        if not rule.enabled:
            continue
        add(
            _name(rule.name),
            f'max by (deployment, subject) (relevo_alert_firing{{rule="{rule.name}"}}) > 0',
            hold,
            rule.severity,
            f"relevo {rule.name} on {{{{ $labels.deployment }}}} {{{{ $labels.subject }}}}: "
            f"{rule.description}",
        )
    by_name = {r.name: r for r in rules}
    errors = by_name.get("model_errors")
    if errors is not None and errors.enabled:
        share = errors.param("max_share")
        add(
            "RelevoServerErrors",
            'sum by (deployment) (rate(relevo_requests_total{status=~"5.."}[5m])) / '
            f"sum by (deployment) (rate(relevo_requests_total[5m])) > {share:g}",
            "5m",
            errors.severity,
            f"more than {share:.0%} of the requests to {{{{ $labels.deployment }}}} fail",
        )
    latency = by_name.get("latency_p99")
    if latency is not None and latency.enabled:
        seconds = latency.param("threshold_ms") / 1000
        add(
            "RelevoRequestLatencyP99",
            "histogram_quantile(0.99, sum by (deployment, le) "
            f"(rate(relevo_request_latency_seconds_bucket[5m]))) > {seconds:g}",
            "5m",
            latency.severity,
            f"p99 latency of {{{{ $labels.deployment }}}} over {seconds * 1000:g} ms",
        )
    return "\n".join(lines) + "\n"
