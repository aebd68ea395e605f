"""Alert rules: what each rule watches, its documented defaults, and the per-deployment overrides
(the "alerts" section of a deployment's monitoring settings).

Every rule is on for every deployment. A rule fires when `fire_after` of its last `window`
evaluations found the signal breaking it ("N of M" persistence: one noisy window never pages
anyone) and resolves once `clear_after` evaluations in a row found it clear. Rules with
thresholds of their own (`params`) read them here too; the drift and data-quality thresholds
belong to the drift settings (the "drift" section).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from relevo.errors import InvalidInputError, Problem

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class Rule:
    """One alert rule with its settings."""

    name: str
    description: str
    enabled: bool = True
    #: fire when this many of the last `window` evaluations broke the rule
    fire_after: int = 3
    window: int = 5
    #: resolve after this many clear evaluations in a row
    clear_after: int = 3
    severity: str = "warning"
    #: the rule's own thresholds (name -> value), e.g. latency_p99's `threshold_ms`
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, key: str) -> float:
        return float(self.params[key])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "fire_after": self.fire_after,
            "window": self.window,
            "clear_after": self.clear_after,
            "severity": self.severity,
            **dict(self.params),
        }


#: the rules and their defaults (docs/alerts.md explains each choice)
DEFAULT_RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("feature_drift", "an input feature drifted from the reference (subject: feature)"),
        Rule("dataset_drift", "the share of drifted features is over its limit"),
        Rule("prediction_drift", "the model's output distribution drifted"),
        Rule("multivariate_drift", "the reference PCA's reconstruction error drifted"),
        Rule("data_quality", "missing, out-of-range or unseen values over their limit"),
        Rule(
            "degenerate_output",
            "constant scores, a single predicted class or NaN outputs",
            fire_after=2,
            window=3,
            clear_after=2,
            severity="critical",
        ),
        Rule(
            "no_predictions",
            "no predictions while the deployment's own history expects traffic, or one "
            "replica silent while the others answer (subject: replica)",
            fire_after=2,
            window=3,
            clear_after=1,
            severity="critical",
            params={
                "window_s": 300.0,
                "history_days": 7.0,
                "trailing_windows": 12.0,
                "alpha": 1e-4,
            },
        ),
        Rule(
            "model_errors",
            "the share of rows the model failed on is over max_share",
            severity="critical",
            params={"window_s": 300.0, "max_share": 0.05, "min_rows": 100.0},
        ),
        Rule(
            "latency_p99",
            "the p99 request latency over the window is over threshold_ms",
            params={"window_s": 300.0, "threshold_ms": 500.0, "min_rows": 200.0},
        ),
        Rule(
            "rollout_gate",
            "a rollout gate rolled a challenger back (the reason is in the message)",
            fire_after=1,
            window=1,
            clear_after=1,
            severity="critical",
            params={"window_s": 3600.0},
        ),
        Rule(
            "performance",
            "a label-based metric crossed its business threshold (subject: metric)",
            fire_after=2,
            window=3,
            clear_after=2,
        ),
    )
}

_COMMON = {"enabled", "fire_after", "window", "clear_after", "severity"}
#: keys of the "alerts" section besides the rules: notifier addresses for this deployment
NOTIFIER_KEYS = ("webhook_url", "slack_url")


def validate_alerts(section: Any) -> dict[str, Any]:
    """The "alerts" section of a deployment's monitoring settings, checked: `{RULE: {KEY:
    VALUE}}` overrides and the notifier addresses; InvalidInputError names every bad field."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise InvalidInputError(
            "invalid alert settings", [Problem("expected an object", column="alerts")]
        )
    problems: list[Problem] = []
    out: dict[str, Any] = {}
    for key, value in section.items():
        where = f"alerts.{key}"
        if key in NOTIFIER_KEYS:
            if value is not None and not (
                isinstance(value, str) and value.startswith(("http://", "https://"))
            ):
                problems.append(Problem("an http(s) URL or null", column=where))
            out[key] = value
            continue
        rule = DEFAULT_RULES.get(key)
        if rule is None:
            known = ", ".join([*DEFAULT_RULES, *NOTIFIER_KEYS])
            problems.append(Problem(f"unknown rule or setting (known: {known})", column=where))
            continue
        if not isinstance(value, Mapping):
            problems.append(Problem("expected an object of rule settings", column=where))
            continue
        checked: dict[str, Any] = {}
        for name, v in value.items():
            problem = _check(rule, name, v)
            if problem:
                problems.append(Problem(problem, column=f"{where}.{name}"))
            else:
                checked[name] = v
        out[key] = checked
    if problems:
        raise InvalidInputError("invalid alert settings", problems)
    for key, value in out.items():  # the counts must make sense together
        if key in DEFAULT_RULES:
            r = apply_overrides(DEFAULT_RULES[key], value)
            if r.fire_after > r.window:
                raise InvalidInputError(
                    "invalid alert settings",
                    [Problem(f"fire_after {r.fire_after} > window {r.window}", column=key)],
                )
    return out


def _check(rule: Rule, name: str, value: Any) -> str | None:
    if name == "enabled":
        return None if isinstance(value, bool) else "true or false"
    if name == "severity":
        return None if value in SEVERITIES else f"one of {', '.join(SEVERITIES)}"
    if name in ("fire_after", "window", "clear_after"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 60
        return None if ok else "a whole number in 1..60"
    if name in rule.params:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return None if ok else "a number of at least 0"
    known = ", ".join(sorted(_COMMON | set(rule.params)))
    return f"unknown setting of {rule.name} (known: {known})"


def apply_overrides(rule: Rule, overrides: Mapping[str, Any]) -> Rule:
    """`rule` with a deployment's (validated) overrides."""
    common = {k: v for k, v in overrides.items() if k in _COMMON}
    params = {k: float(v) for k, v in overrides.items() if k in rule.params}
    return replace(rule, **common, params={**rule.params, **params})


def rules_for(alerts_section: Mapping[str, Any] | None) -> dict[str, Rule]:
    """The rules of one deployment: the defaults with its overrides. A rule name the engine
    does not know (a provider added later) gets the generic defaults."""
    section = alerts_section or {}
    return {
        name: apply_overrides(rule, section.get(name) or {}) for name, rule in DEFAULT_RULES.items()
    }


def rule_of(rules: Mapping[str, Rule], name: str) -> Rule:
    """The rule called `name`, or the generic defaults for a rule only a provider knows."""
    return rules.get(name) or Rule(name, "a rule of an added provider")
