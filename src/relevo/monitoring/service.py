"""`MonitoringService`: drift of a deployment over a time window, from its stored bucket
profiles, against a baseline (one core for `relevo drift`, `GET /v1/deployments/{name}/drift`
and the drift alerts)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from relevo.errors import InvalidInputError, NotFoundError, Problem
from relevo.monitoring.drift import DriftConfig, DriftReport, compare
from relevo.monitoring.windows import Window, load_window
from relevo.registry.types import ModelRef

if TYPE_CHECKING:
    from relevo.context import Relevo

BASELINES = ("reference", "previous", "seasonal")
#: how far back the seasonal baseline looks: the same hours of the same weekday
SEASON = timedelta(days=7)


class MonitoringService:
    """Drift reports of a relevo home's deployments."""

    def __init__(self, rv: Relevo) -> None:
        self.rv = rv

    def config(self, deployment: str) -> DriftConfig:
        """The deployment's drift settings: the "drift" section of its monitoring settings
        (defaults where it says nothing)."""
        # the repository of per-deployment monitoring settings is the alerts part's
        settings_of = getattr(getattr(self.rv.store, "alerts", None), "monitoring", None)
        settings = settings_of(deployment) if settings_of is not None else None
        return DriftConfig.from_dict((settings or {}).get("drift"))

    def window(
        self,
        deployment: str,
        since: datetime,
        until: datetime | None = None,
        model: str | tuple[str, int] | None = None,
        among: Collection[tuple[str, int]] | None = None,
    ) -> Window:
        """The merged profiles of [since, until) of `model` (default: the model that answered
        most rows, of those `among` when given); NotFoundError naming the window when no
        prediction was profiled in it."""
        self.rv.deployments.get(deployment)  # NotFoundError for an unknown deployment
        until = until or datetime.now(UTC)
        if since >= until:
            raise InvalidInputError(
                "the window is empty",
                [Problem(f"since must be before {until:%Y-%m-%d %H:%M:%S}", option="since")],
            )
        found = load_window(
            self.rv.store, deployment, since, until, model=self._model(model), among=among
        )
        if found is None:
            which = f" of {_ref(model)}" if model is not None else ""
            raise NotFoundError(
                f"no prediction{which} of deployment {deployment!r} was profiled between "
                f"{_when(since)} and {_when(until)}: send traffic, or widen the window (--since)"
            )
        return found

    def drift(
        self,
        deployment: str,
        since: datetime,
        until: datetime | None = None,
        model: str | tuple[str, int] | None = None,
        baseline: str = "reference",
        config: DriftConfig | None = None,
    ) -> DriftReport:
        """Drift of `deployment`'s inputs, predictions and reconstruction error over
        [since, until) against `baseline`: "reference" (the model version's registered
        reference), "previous" (the window of the same length just before) or "seasonal"
        (the same window a week earlier)."""
        if baseline not in BASELINES:
            raise InvalidInputError(
                f"unknown baseline {baseline!r}",
                [Problem(f"one of {', '.join(BASELINES)}", option="baseline")],
            )
        until = until or datetime.now(UTC)
        current = self.window(deployment, since, until, model)
        return self.report(current, baseline, config or self.config(deployment))

    def report(self, current: Window, baseline: str, config: DriftConfig) -> DriftReport:
        """Drift of an already loaded window against `baseline` (see `drift`)."""
        if baseline not in BASELINES:
            raise InvalidInputError(
                f"unknown baseline {baseline!r}",
                [Problem(f"one of {', '.join(BASELINES)}", option="baseline")],
            )
        deployment, since, until = current.deployment, current.since, current.until
        reference = current.reference
        if baseline == "reference":
            base_inputs, base_prediction = reference.inputs, reference.prediction
            base_mv = reference.multivariate.errors_profile if reference.multivariate else None
        else:
            shift = until - since if baseline == "previous" else SEASON
            earlier = load_window(
                self.rv.store,
                deployment,
                since - shift,
                until - shift,
                model=(current.model_name, current.model_version),
            )
            if earlier is None:
                raise NotFoundError(
                    f"no prediction of {current.model} on deployment {deployment!r} was "
                    f"profiled between {_when(since - shift)} and {_when(until - shift)}, the "
                    f"{baseline} baseline: compare against the reference instead"
                )
            base_inputs, base_prediction = earlier.inputs, earlier.prediction
            base_mv = earlier.multivariate
        report = compare(
            base_inputs,
            current.inputs,
            config,
            prediction=(base_prediction, current.prediction),
            multivariate=(base_mv, current.multivariate),
            baseline=baseline,
            deployment=deployment,
            model=current.model,
            since=since,
            until=until,
        )
        return _name_unseen(report, current)

    def _model(self, model: str | tuple[str, int] | None) -> tuple[str, int] | None:
        if model is None:
            return None
        if isinstance(model, tuple):
            return model
        version = self.rv.registry.get(ModelRef.parse(model))
        return (version.name, version.version)


def _name_unseen(report: DriftReport, window: Window) -> DriftReport:
    """Production profiles count categories the reference never showed as "__other__"; the
    window's quality profile knows them by name: say which in the features' notes."""
    unseen = window.quality.unseen
    if not unseen:
        return report
    features = []
    for f in report.features:
        found = unseen.get(f.feature)
        if found is not None and f.evaluable:
            names = ", ".join(list(found.top)[:5])
            f = replace(f, note=f"unseen: {names} ({found.distinct:,.0f} distinct)")
        features.append(f)
    return replace(report, features=tuple(features))


def _ref(model: Any) -> str:
    return f"{model[0]}:{model[1]}" if isinstance(model, tuple) else str(model)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
