"""Per-deployment monitoring settings: the `monitoring` of a deployment, with the sections
"drift", "alerts" and "feedback". Alerting validates its own section; the others are kept as
the objects given (their owners read and check them). Changing them never touches the
deployment's routing state or its revision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from relevo.context import Relevo
from relevo.errors import InvalidInputError, NotFoundError, Problem
from relevo.monitoring.alerts.rules import Rule, rules_for, validate_alerts
from relevo.monitoring.drift import DriftConfig

SECTIONS = ("drift", "alerts", "feedback")


def validate(settings: Any) -> dict[str, Any]:
    """A whole settings object, checked: only the known sections, each an object."""
    if not isinstance(settings, Mapping):
        raise InvalidInputError(
            "invalid monitoring settings",
            [Problem(f"expected an object with sections {', '.join(SECTIONS)}", column="body")],
        )
    problems = [
        Problem(f"unknown section (known: {', '.join(SECTIONS)})", column=str(k))
        for k in settings
        if k not in SECTIONS
    ]
    problems += [
        Problem("expected an object", column=k)
        for k in SECTIONS
        if settings.get(k) is not None and not isinstance(settings.get(k), Mapping)
    ]
    if problems:
        raise InvalidInputError("invalid monitoring settings", problems)
    out = {k: dict(settings[k]) for k in SECTIONS if settings.get(k)}
    if "alerts" in out:
        out["alerts"] = validate_alerts(out["alerts"])
    if "drift" in out:
        DriftConfig.from_dict(out["drift"])  # refused when saved, not when evaluated
    return out


def get(rv: Relevo, deployment: str) -> dict[str, Any]:
    """The deployment's monitoring settings as stored ({} when it has only defaults)."""
    found = rv.store.alerts.monitoring(deployment)
    if found is None:
        rv.deployments.get(deployment)  # the NotFoundError listing the deployments
        raise NotFoundError(f"deployment {deployment!r} not found")
    return found


def put(rv: Relevo, deployment: str, settings: Any) -> dict[str, Any]:
    """Replace the deployment's monitoring settings (validated); returns them."""
    checked = validate(settings)
    get(rv, deployment)
    if "drift" in checked:
        _fits_the_models(rv, deployment, DriftConfig.from_dict(checked["drift"]))
    if (checked.get("feedback") or {}).get("thresholds"):
        from relevo.feedback.labels import label_kind
        from relevo.feedback.performance import checked_thresholds

        task = label_kind(rv, deployment).task
        checked_thresholds(checked["feedback"]["thresholds"], deployment, task)
    if not rv.store.alerts.set_monitoring(deployment, checked):
        raise NotFoundError(f"deployment {deployment!r} not found")
    return checked


def _fits_the_models(rv: Relevo, deployment: str, drift: DriftConfig) -> None:
    """Refuse per-feature drift settings that no look could apply: a column no model of the
    deployment has, or a method that does not test the column's kind (`ks` on a categorical
    column). Stored, such a setting failed every drift look and so silenced the drift and
    data-quality alerts. Models without a reference profile are not checked."""
    from relevo.monitoring.drift.config import CATEGORICAL_METHODS, NUMERIC_METHODS
    from relevo.monitoring.numeric import NumericProfile

    if not drift.features:
        return
    state = rv.deployments.get(deployment)
    kinds: dict[str, str] = {}
    refs = [state.champion_ref, *([state.challenger_ref] if state.challenger_ref else [])]
    for ref in refs:
        try:
            profile = rv.registry.reference_profile(ref)
        except NotFoundError:
            return
        for name, column in profile.inputs.columns.items():
            kinds.setdefault(
                name, "numeric" if isinstance(column, NumericProfile) else "categorical"
            )
    problems = []
    for name, settings in drift.features.items():
        where = f"drift.features.{name}"
        kind = kinds.get(name)
        if kind is None:
            problems.append(
                Problem(
                    f"no column {name!r} in {', '.join(refs)} (its columns: {', '.join(kinds)})",
                    column=where,
                )
            )
            continue
        allowed = NUMERIC_METHODS if kind == "numeric" else CATEGORICAL_METHODS
        if settings.method != "auto" and settings.method not in allowed:
            problems.append(
                Problem(
                    f"{settings.method!r} does not test {kind} columns; use one of "
                    f"{', '.join(allowed)}",
                    column=f"{where}.method",
                )
            )
    if problems:
        raise InvalidInputError("invalid drift settings", problems)


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with each webhook address cut to its scheme and host (for a caller who may
    read but not change them: the rest of the address is the credential)."""
    from relevo.monitoring.alerts.notifiers import shown_url
    from relevo.monitoring.alerts.rules import NOTIFIER_KEYS

    section = settings.get("alerts")
    if not isinstance(section, Mapping):
        return settings
    hidden = {
        k: shown_url(v) if k in NOTIFIER_KEYS and isinstance(v, str) else v
        for k, v in section.items()
    }
    return {**settings, "alerts": hidden}


def parse_value(text: str) -> Any:
    """A value from the command line: JSON (true, 3, 0.5, null, "x", {...}) or else the text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def assign(settings: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """`settings` with `SECTION.KEY[.KEY...]=VALUE` assignments applied (null removes a key)."""
    out = orjson.loads(orjson.dumps(dict(settings)))  # a deep copy
    for item in assignments:
        path, sep, raw = item.partition("=")
        keys = [k for k in path.strip().split(".")]
        if not sep or len(keys) < 2 or not all(keys):
            raise InvalidInputError(
                "invalid setting",
                [Problem("expected SECTION.KEY=VALUE, e.g. alerts.latency_p99.threshold_ms=800",
                         column=item)],
            )  # fmt: skip
        if keys[0] not in SECTIONS:
            raise InvalidInputError(
                "invalid setting",
                [Problem(f"unknown section (known: {', '.join(SECTIONS)})", column=path)],
            )
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        value = parse_value(raw.strip())
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return out


def update(rv: Relevo, deployment: str, assignments: Sequence[str]) -> dict[str, Any]:
    """Apply `SECTION.KEY=VALUE` assignments to the stored settings and store them."""
    return put(rv, deployment, assign(get(rv, deployment), assignments))


def rules_of_deployment(rv: Relevo, deployment: str) -> dict[str, Rule]:
    """The alert rules of a deployment: defaults with its overrides (defaults when the stored
    section is unreadable, so a bad value never stops alerting)."""
    section = (rv.store.alerts.monitoring(deployment) or {}).get("alerts")
    try:
        return rules_for(validate_alerts(section))
    except InvalidInputError:
        return rules_for(None)
