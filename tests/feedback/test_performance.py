"""Performance per window against scikit-learn on the same joined rows, maturity, thresholds,
the shadow's own performance, late labels re-evaluating their window, and the label metric."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn import metrics as skm

from relevo.datasets import CHURN_TARGET, make_churn
from relevo.feedback.labels import ingest
from relevo.feedback.metrics import binary_metrics, multiclass_metrics, regression_metrics
from relevo.feedback.service import PerformanceService, label_metric
from relevo.feedback.signals import signals

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
NOW = DAY0 + timedelta(days=20)


def _label_all(rv, ids, frame, share=1.0, seed=0):
    rng = np.random.default_rng(seed)
    pick = rng.random(len(ids)) < share
    chosen = [i for i, keep in zip(ids, pick, strict=True) if keep]
    values = frame[CHURN_TARGET].to_numpy()[pick].tolist()
    ingest(rv, "churn", [(list(range(len(chosen))), chosen, values)])
    return pick


def test_every_metric_equals_scikit_learn_per_window(rv, deployed, log_at, proba_of):
    days = [make_churn(600, seed=10 + d) for d in range(3)]
    picks = []
    for d, frame in enumerate(days):
        ids = log_at(frame, DAY0 + timedelta(days=d), spread=timedelta(hours=23))
        picks.append(_label_all(rv, ids, frame, share=0.7, seed=d))
    report = PerformanceService(rv).performance("churn", "1d", now=NOW)
    (champion,) = report.models
    assert [w.start for w in champion.windows] == [DAY0 + timedelta(days=d) for d in range(3)]
    for w, frame, pick in zip(champion.windows, days, picks, strict=True):
        y = frame[CHURN_TARGET].to_numpy()[pick]
        p = proba_of(frame)[pick]
        yhat = (p >= 0.5).astype(int)
        expected = {
            "accuracy": skm.accuracy_score(y, yhat),
            "precision": skm.precision_score(y, yhat),
            "recall": skm.recall_score(y, yhat),
            "f1": skm.f1_score(y, yhat),
            "roc_auc": skm.roc_auc_score(y, p),
            "log_loss": skm.log_loss(y, p),
            "brier": skm.brier_score_loss(y, p),
        }
        assert w.rows == 600 and w.labelled == int(pick.sum())
        for name, value in expected.items():
            got = w.metrics[name]
            assert got.value == pytest.approx(value, abs=1e-9), name
            assert got.count == len(y)
            assert got.low is not None and got.high is not None
            assert got.low <= got.value <= got.high, name
        assert w.mature  # 20 days later, past the 7-day label delay
        assert w.coverage == pytest.approx(pick.mean())
        table = w.calibration
        assert sum(b["rows"] for b in table) == len(y)
        first = table[0]
        in_bin = (p >= first["low"]) & (p < first["high"])
        assert first["observed"] == pytest.approx(y[in_bin].mean())


def test_metric_functions_match_scikit_learn_on_edge_cases():
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.2
    p = rng.random(500)
    p[:5] = [0.0, 1.0, 1.0, 0.0, 0.5]  # log loss clipping and ties
    got = {m.name: m.value for m in binary_metrics(y, p, p >= 0.5)}
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-9)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    # 0/0 is undefined (scikit-learn's zero_division=nan), never a 0 that breaches a threshold
    none = {m.name: m.value for m in binary_metrics(y, p, np.zeros(500, bool))}
    assert np.isnan(skm.precision_score(y, np.zeros(500, int), zero_division=np.nan))
    assert none["precision"] is None and none["recall"] == 0.0
    stayed = {m.name: m.value for m in binary_metrics(np.zeros(500, bool), p, p >= 0.5)}
    assert np.isnan(skm.recall_score(np.zeros(500, int), p >= 0.5, zero_division=np.nan))
    assert stayed["recall"] is None and stayed["precision"] == 0.0
    k = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.6, k, rng.integers(0, 4, 400))
    proba = rng.dirichlet(np.ones(4), 400)
    multi = {m.name: m.value for m in multiclass_metrics(k, pred, proba, [0, 1, 2, 3])}
    assert multi["accuracy"] == pytest.approx(skm.accuracy_score(k, pred), abs=1e-12)
    for name, func in (("precision", skm.precision_score), ("recall", skm.recall_score)):
        expected = func(k, pred, average="macro", zero_division=0)
        assert multi[name] == pytest.approx(expected, abs=1e-9)
    assert multi["f1"] == pytest.approx(skm.f1_score(k, pred, average="macro"), abs=1e-9)
    assert multi["log_loss"] == pytest.approx(skm.log_loss(k, proba, labels=[0, 1, 2, 3]))
    k4 = rng.integers(0, 4, 400)  # every class present, as scikit-learn's ovr AUC needs
    multi4 = {m.name: m for m in multiclass_metrics(k4, pred, proba, [0, 1, 2, 3])}
    auc = skm.roc_auc_score(k4, proba, multi_class="ovr", labels=[0, 1, 2, 3])
    assert multi4["roc_auc"].value == pytest.approx(auc, abs=1e-9)
    assert multi4["roc_auc"].low < auc < multi4["roc_auc"].high  # type: ignore[operator]
    brier = skm.brier_score_loss(k4, proba, labels=[0, 1, 2, 3])
    assert multi4["brier"].value == pytest.approx(brier, abs=1e-9)
    truth = rng.normal(size=300)
    value = truth + rng.normal(scale=0.5, size=300)
    reg = {m.name: m for m in regression_metrics(truth, value)}
    assert reg["mae"].value == pytest.approx(skm.mean_absolute_error(truth, value), abs=1e-9)
    rmse = np.sqrt(skm.mean_squared_error(truth, value))
    assert reg["rmse"].value == pytest.approx(rmse, abs=1e-9)
    assert reg["r2"].value == pytest.approx(skm.r2_score(truth, value), abs=1e-9)
    assert reg["r2"].low is not None and reg["r2"].low < reg["r2"].value < reg["r2"].high  # type: ignore[operator]


def test_immature_window_and_late_labels(rv, deployed, log_at):
    frame = make_churn(400, seed=5)
    ids = log_at(frame, NOW - timedelta(days=1), spread=timedelta(hours=2))
    half = len(ids) // 4
    ingest(rv, "churn", [(list(range(half)), ids[:half], frame[CHURN_TARGET][:half].tolist())])
    service = PerformanceService(rv)
    early = service.performance("churn", "1d", "7d", now=NOW).models[0].windows[-1]
    assert early.labelled == half and not early.mature  # a quarter labelled, a day old
    rest = list(range(half, len(ids)))
    ingest(rv, "churn", [(rest, ids[half:], frame[CHURN_TARGET][half:].tolist())])
    late = service.performance("churn", "1d", "7d", now=NOW).models[0].windows[-1]
    assert late.labelled == len(ids) and late.mature  # coverage reached min_coverage
    assert late.metrics["accuracy"].count == len(ids)


def test_shadow_and_challenger_measured_apart(rv, deployed, log_at, proba_of):
    frame = make_churn(300, seed=8)
    ids = log_at(frame, DAY0)
    # the shadow's output for the same ids (here: the inverse model, which is always wrong)
    from relevo.store.shadows import ShadowRow

    p = proba_of(frame)
    rows = [
        ShadowRow(
            i,
            "churn",
            "churn",
            1,
            DAY0,
            f'{{"probability": {1 - q}, "label": {int(q < 0.5)}}}',
            None,
            1.0,
        )
        for i, q in zip(ids, p, strict=True)
    ]
    rv.store.shadows.insert_many(rows)
    _label_all(rv, ids, frame)
    report = PerformanceService(rv).performance("churn", "1d", now=NOW)
    roles = {m.role: m for m in report.models}
    assert set(roles) == {"champion", "shadow"}
    y = frame[CHURN_TARGET].to_numpy()
    shadow_auc = roles["shadow"].overall["roc_auc"].value
    assert shadow_auc == pytest.approx(skm.roc_auc_score(y, 1 - p), abs=1e-9)
    assert roles["champion"].overall["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, p))


def test_fallback_rows_count_as_the_champion_and_unregistered_models_are_reported(
    rv, deployed, log_at, proba_of
):
    """Rows answered by the fallback join the champion's; rows of a model the registry does
    not know (logged by hand here) are still measured, each model against scikit-learn."""
    frame = make_churn(400, seed=12)
    ids = log_at(frame.iloc[:250], DAY0)
    ids += log_at(frame.iloc[250:300], DAY0, role="fallback")
    _label_all(rv, ids, frame.iloc[:300])
    y, p = frame[CHURN_TARGET].to_numpy(), proba_of(frame)
    (champion,) = PerformanceService(rv).performance("churn", "1d", now=NOW).models
    assert (champion.model, champion.role, champion.rows) == ("churn:1", "champion", 300)
    expected = skm.roc_auc_score(y[:300], p[:300])
    assert champion.overall["roc_auc"].value == pytest.approx(expected, abs=1e-9)
    ghost = log_at(frame.iloc[300:], DAY0, model="ghost:3")
    _label_all(rv, ghost, frame.iloc[300:])
    models = {m.model: m for m in PerformanceService(rv).performance("churn", "1d", now=NOW).models}
    assert set(models) == {"churn:1", "ghost:3"}
    assert models["churn:1"].overall["roc_auc"].value == pytest.approx(expected, abs=1e-9)
    assert models["ghost:3"].rows == 100
    expected = skm.roc_auc_score(y[300:], p[300:])
    assert models["ghost:3"].overall["roc_auc"].value == pytest.approx(expected, abs=1e-9)


def test_thresholds_signals_only_on_mature_windows(rv, deployed, log_at):
    from relevo.store.tables import deployments

    with rv.store.engine.begin() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.name == "churn")
            .values(monitoring={"feedback": {"thresholds": {"accuracy": 0.99, "brier": 0.5}}})
        )
    frame = make_churn(300, seed=9)
    ids = log_at(frame, NOW - timedelta(days=2))
    assert all(not s.evaluable for s in signals(rv, "churn", NOW))  # no labels yet
    _label_all(rv, ids, frame)
    found = {s.subject: s for s in signals(rv, "churn", NOW)}
    assert set(found) == {"accuracy", "brier"}
    assert found["accuracy"].firing and found["accuracy"].rule == "performance"
    assert found["accuracy"].threshold == 0.99
    assert not found["brier"].firing and found["brier"].evaluable


def test_the_alert_provider_reads_no_log_without_thresholds_or_labels(
    rv, deployed, log_at, monkeypatch
):
    """It runs in every server every monitor interval: a deployment with no business
    threshold, or no label yet, costs a settings read and a count, never a scan of the log."""
    import relevo.feedback.service as service
    from relevo.store.tables import deployments

    log_at(make_churn(50, seed=3), NOW - timedelta(days=2))

    def scan(*args, **kwargs):
        raise AssertionError("the log was read")

    monkeypatch.setattr(service, "load_rows", scan)
    assert signals(rv, "churn", NOW) == []
    with rv.store.engine.begin() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.name == "churn")
            .values(monitoring={"feedback": {"thresholds": {"roc_auc": 0.7}}})
        )
    (waiting,) = signals(rv, "churn", NOW)
    assert (waiting.subject, waiting.evaluable, waiting.threshold) == ("roc_auc", False, 0.7)


def test_label_metric_for_the_rollout_gate(
    rv, deployed, log_at, proba_of, churn_pipeline, churn_frame
):
    other = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", other.ref, weight=0.5)
    state = rv.deployments.get("churn")
    assert label_metric(rv, state) is None  # no labels yet
    when = datetime.now(UTC)
    a, b = make_churn(300, seed=11), make_churn(300, seed=12)
    ids_a = log_at(a, when, model=deployed.ref)
    ids_b = log_at(b, when, model=other.ref, role="challenger")
    _label_all(rv, ids_a, a)
    _label_all(rv, ids_b, b)
    found = label_metric(rv, state)
    assert found is not None
    champion, challenger = found
    auc_a = skm.roc_auc_score(a[CHURN_TARGET], proba_of(a))
    assert champion.value == pytest.approx(auc_a, abs=1e-9) and champion.rows == 300
    assert challenger.rows == 300


def test_planted_segment_named_first(rv, deployed, log_at):
    # month-to-month customers under six months of tenure start churning far more
    frame = make_churn(10_000, seed=34, segment_shift=2.5)
    ids = log_at(frame, DAY0, spread=timedelta(hours=20))
    _label_all(rv, ids, frame)
    report = PerformanceService(rv).performance("churn", "1d", segments=True, now=NOW)
    (model,) = report.models
    assert model.segments, "no segment found"
    top = model.segments[0]
    assert top["significant"]
    text = " and ".join(top["conditions"])
    assert "tenure_months < 6" in text, text


def test_html_shows_the_metric_over_time(rv, deployed, log_at):
    for d in range(3):
        frame = make_churn(300, seed=30 + d, mechanism_shift=d / 2)
        _label_all(rv, log_at(frame, DAY0 + timedelta(days=d)), frame)
    report = PerformanceService(rv).performance("churn", "1d", thresholds={"roc_auc": 0.8}, now=NOW)
    page = report.to_html()
    assert page.count("<svg") == 1 and page.count("<circle") == 3
    assert "roc_auc" in report.models[0].trends
    assert "<script" not in page


def test_estimate_beside_realised_and_concept_drift_flag(rv, deployed, log_at, proba_of):
    calm = make_churn(3000, seed=51)
    ids = log_at(calm, DAY0, spread=timedelta(hours=20))
    p = proba_of(calm)
    drawn = (np.random.default_rng(51).random(len(p)) < p).astype(int)  # the model is right
    ingest(rv, "churn", [(list(range(len(ids))), ids, drawn.tolist())])
    shifted = make_churn(3000, seed=52, mechanism_shift=1.0)
    _label_all(rv, log_at(shifted, DAY0 + timedelta(days=1), spread=timedelta(hours=20)), shifted)
    before, after = PerformanceService(rv).performance("churn", "1d", now=NOW).models[0].windows
    for w in (before, after):
        est = w.estimate["accuracy"]  # type: ignore[index]
        assert est["low"] <= est["estimate"] <= est["high"]
    realised = before.metrics["accuracy"].value
    assert before.estimate["accuracy"]["low"] <= realised <= before.estimate["accuracy"]["high"]  # type: ignore[index]
    assert not before.concept_drift
    assert after.concept_drift


def test_bad_feedback_settings_are_named(rv, deployed):
    from relevo.errors import InvalidInputError
    from relevo.store.tables import deployments

    for bad in ({"thresholds": {"accuracy": "high"}}, {"label_delay_days": "soon"}):
        with rv.store.engine.begin() as conn:
            conn.execute(
                deployments.update()
                .where(deployments.c.name == "churn")
                .values(monitoring={"feedback": bad})
            )
        with pytest.raises(InvalidInputError, match="feedback"):
            PerformanceService(rv).performance("churn", "1d", now=NOW)


def _thresholds(rv, section: dict) -> None:
    from relevo.store.tables import deployments

    with rv.store.engine.begin() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.name == "churn")
            .values(monitoring={"feedback": section})
        )


def test_a_label_delay_of_a_month_still_gets_its_windows_judged(rv, deployed, log_at):
    """A window is mature `label_delay_days` after its end: with a delay of 30 days the
    provider must look back further than 30 days, or it never finds one."""
    _thresholds(rv, {"label_delay_days": 30, "thresholds": {"accuracy": 0.99}})
    frame = make_churn(300, seed=21)
    ids = log_at(frame, NOW - timedelta(days=40))
    _label_all(rv, ids, frame)
    (found,) = signals(rv, "churn", NOW)
    assert found.evaluable and found.firing and found.subject == "accuracy"


def test_a_breached_threshold_takes_the_severity_of_its_rule(rv, deployed, log_at):
    frame = make_churn(300, seed=22)
    _thresholds(rv, {"thresholds": {"accuracy": 0.99}})
    _label_all(rv, log_at(frame, NOW - timedelta(days=10)), frame)
    (found,) = signals(rv, "churn", NOW)
    assert found.firing and found.severity == "warning"  # the rule's (warning unless set)


def test_a_removed_threshold_resolves_its_alert(rv, deployed, log_at):
    """The provider names every threshold each time: one no longer named is no longer
    measured, and its alert resolves instead of firing for ever."""
    from relevo.monitoring.alerts.service import AlertService

    frame = make_churn(300, seed=23)
    _thresholds(rv, {"thresholds": {"accuracy": 0.999, "brier": 0.9}})
    _label_all(rv, log_at(frame, NOW - timedelta(days=10)), frame)
    alerts = AlertService(rv, providers=[signals], clock=lambda: NOW)
    for minute in range(2):
        alerts.evaluate(NOW + timedelta(minutes=minute))
    (firing,) = [a for a in rv.store.alerts.open_alerts().values() if a.firing]
    assert (firing.rule, firing.subject, firing.severity) == ("performance", "accuracy", "warning")
    _thresholds(rv, {"thresholds": {"brier": 0.9}})  # accuracy is no longer a business goal
    alerts.evaluate(NOW + timedelta(minutes=2))
    assert not [a for a in rv.store.alerts.open_alerts().values() if a.firing]
    listed = rv.store.alerts.list("churn", firing_only=False)
    (resolved,) = [a for a in listed if a.subject == "accuracy"]
    assert "accuracy is no longer measured" in resolved.message
