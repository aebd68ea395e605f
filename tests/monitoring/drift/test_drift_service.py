"""Drift of a deployment over a window, from stored bucket profiles: against the reference,
the previous window and the same hour a week earlier; the drift provider's signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from traffic import write_traffic

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.errors import InvalidInputError, NotFoundError
from relevo.monitoring.drift_signals import signals
from relevo.monitoring.service import MonitoringService

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture
def churn(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref)
    return version


def test_undrifted_traffic_raises_no_alarm(rv, churn, churn_pipeline) -> None:
    write_traffic(rv, churn, churn_pipeline, make_churn(3000, seed=11), NOW - HOUR)
    report = MonitoringService(rv).drift("churn", NOW - 2 * HOUR, NOW + HOUR)
    assert report.current_rows == 3000 and report.model == churn.ref
    assert report.drifted_features == [] and not report.dataset_drift
    assert report.prediction is not None and not report.prediction.drifted
    assert report.multivariate is not None and not report.multivariate.drifted
    assert [f.feature for f in report.features] == CHURN_FEATURES


def test_ageing_and_a_price_rise_are_named(rv, churn, churn_pipeline) -> None:
    frame = make_churn(3000, seed=12, ageing=6, price_change=0.2)
    write_traffic(rv, churn, churn_pipeline, frame, NOW - HOUR)
    report = MonitoringService(rv).drift("churn", NOW - 2 * HOUR, NOW + HOUR)
    assert report.drifted_features == ["age", "monthly_charges"]
    body = report.to_dict()
    assert body["drifted_features"] == ["age", "monthly_charges"]
    assert body["deployment"] == "churn" and body["baseline"] == "reference"


def test_a_new_contract_type_is_named_by_its_name(rv, churn, churn_pipeline) -> None:
    frame = make_churn(3000, seed=13, new_contract_share=0.06)
    write_traffic(rv, churn, churn_pipeline, frame, NOW - HOUR)
    report = MonitoringService(rv).drift("churn", NOW - 2 * HOUR, NOW + HOUR)
    assert report.drifted_features == ["contract"]
    assert "pay-as-you-go" in report.feature("contract").note


def test_previous_and_seasonal_baselines(rv, churn, churn_pipeline) -> None:
    service = MonitoringService(rv)
    week = 7 * 24 * HOUR
    write_traffic(rv, churn, churn_pipeline, make_churn(2000, seed=14), NOW - 2 * HOUR)
    write_traffic(rv, churn, churn_pipeline, make_churn(2000, seed=15), NOW - week - HOUR)
    write_traffic(rv, churn, churn_pipeline, make_churn(2000, seed=16, ageing=8), NOW - HOUR)
    previous = service.drift("churn", NOW - HOUR, NOW, baseline="previous")
    assert previous.baseline == "previous" and previous.reference_rows == 2000
    assert previous.drifted_features == ["age"]
    seasonal = service.drift("churn", NOW - HOUR, NOW, baseline="seasonal")
    assert seasonal.drifted_features == ["age"] and seasonal.reference_rows == 2000
    # the hour before saw no traffic a week ago
    with pytest.raises(NotFoundError, match="seasonal baseline"):
        service.drift("churn", NOW - 2 * HOUR, NOW - HOUR, baseline="seasonal")
    with pytest.raises(NotFoundError, match="previous baseline"):
        service.drift("churn", NOW - 2 * HOUR, NOW - HOUR, baseline="previous")


def test_clear_errors(rv, churn) -> None:
    service = MonitoringService(rv)
    with pytest.raises(NotFoundError, match="nope"):
        service.drift("nope", NOW - HOUR)
    with pytest.raises(NotFoundError, match="no prediction of deployment 'churn' was profiled"):
        service.drift("churn", NOW - HOUR)
    with pytest.raises(InvalidInputError, match="baseline"):
        service.drift("churn", NOW - HOUR, baseline="yesterday")
    with pytest.raises(NotFoundError, match="churn:7"):
        service.drift("churn", NOW - HOUR, model="churn:7")


def test_the_drift_provider_signals(rv, churn, churn_pipeline) -> None:
    frame = make_churn(3000, seed=17, ageing=6)
    frame.loc[:299, "tenure_months"] = None  # 10 % missing: a data-quality problem
    write_traffic(rv, churn, churn_pipeline, frame, NOW - 30 * timedelta(minutes=1))
    found = {(s.rule, s.subject): s for s in signals(rv, "churn", NOW + timedelta(minutes=1))}
    assert found[("feature_drift", "age")].firing
    assert found[("feature_drift", "age")].value == pytest.approx(
        MonitoringService(rv)
        .drift("churn", NOW - HOUR, NOW + timedelta(minutes=1))
        .feature("age")
        .statistic
    )
    assert not found[("feature_drift", "region")].firing
    assert not found[("dataset_drift", "")].firing
    assert found[("dataset_drift", "")].value == pytest.approx(1 / 9)
    assert ("prediction_drift", "") in found and ("multivariate_drift", "") in found
    assert found[("data_quality", "tenure_months")].firing
    assert "10.0% missing" in found[("data_quality", "tenure_months")].message
    assert not found[("data_quality", "region")].firing
    assert not found[("degenerate_output", "nan_outputs")].firing
    assert not found[("degenerate_output", "constant_score")].firing
    assert not found[("degenerate_output", "single_class")].firing
    # no traffic in the window: nothing to say (the traffic provider speaks of silence)
    assert signals(rv, "churn", NOW + 3 * HOUR) == []


class Constant:
    """A model that answers one score whatever it is asked."""

    def predict_proba(self, x):
        import numpy as np

        return np.tile([0.9, 0.1], (len(x), 1))


def test_degenerate_outputs_fire(rv, churn) -> None:
    write_traffic(rv, churn, Constant(), make_churn(1000, seed=18), NOW - 30 * timedelta(minutes=1))
    found = {(s.rule, s.subject): s for s in signals(rv, "churn", NOW + timedelta(minutes=1))}
    assert found[("degenerate_output", "constant_score")].firing
    assert found[("degenerate_output", "single_class")].firing
    assert "predicted negative" in found[("degenerate_output", "single_class")].message
    assert found[("prediction_drift", "")].firing


def test_after_a_swap_the_drift_signals_judge_the_new_champions_rows(
    rv, churn, churn_pipeline, churn_frame
) -> None:
    """The drift provider judged the model that answered most rows in its window (an hour):
    after a swap, the old champion's for up to half an hour, so its broken outputs fired the
    new champion's prediction_drift and degenerate_output (and rolled it back in its bake)."""
    write_traffic(rv, churn, Constant(), make_churn(3000, seed=19), NOW - 40 * timedelta(minutes=1))
    second = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", second.ref)
    write_traffic(
        rv, second, churn_pipeline, make_churn(1000, seed=20), NOW - 10 * timedelta(minutes=1)
    )
    found = {(s.rule, s.subject): s for s in signals(rv, "churn", NOW + timedelta(minutes=1))}
    assert not found[("prediction_drift", "")].firing
    assert not found[("degenerate_output", "constant_score")].firing
    assert not found[("degenerate_output", "single_class")].firing
    assert "of 1,000 outputs" in found[("degenerate_output", "nan_outputs")].message
    # `relevo drift` still looks at any model asked for, the old champion's rows too
    old = MonitoringService(rv).drift("churn", NOW - HOUR, NOW, model=churn.ref)
    assert old.model == churn.ref and old.prediction is not None and old.prediction.drifted


def test_a_small_window_whose_rows_came_in_one_minute_is_tested_on_all_its_values(
    rv, churn, churn_pipeline, churn_frame
) -> None:
    """A one-minute bucket keeps 32 values per column: 900 rows scored within a minute were
    KS-tested on 32 of them, and a clear shift was missed (p 0.157, where the 900 values give
    p ~1e-22). Such a window is tested on the counts of every value in the reference's bins."""
    import relevo

    frame = make_churn(900, seed=21, ageing=6)
    write_traffic(rv, churn, churn_pipeline, frame, NOW - HOUR, minutes=1, replicas=("a",))
    age = MonitoringService(rv).drift("churn", NOW - 2 * HOUR, NOW).feature("age")
    offline = relevo.drift(churn_frame[CHURN_FEATURES], frame[CHURN_FEATURES]).feature("age")
    assert offline.method == age.method == "ks" and offline.drifted
    assert age.current_rows == 900
    assert age.drifted, (age.statistic, age.p_value)
    # the binned statistic never exceeds the exact one (the gap is read at bin edges only)
    assert 0 < age.statistic <= offline.statistic + 1e-12


def test_the_drift_score_gauge_is_the_statistic_whatever_the_test(rv, churn, churn_pipeline):
    """relevo_drift_score held the p-value of a column tested with KS (a window under 1,000
    rows): high meant stable there and drifted elsewhere."""
    from prometheus_client import CollectorRegistry

    from relevo.monitoring import drift_signals
    from relevo.monitoring.alerts.gauges import AlertGauges
    from relevo.monitoring.alerts.service import AlertService

    write_traffic(
        rv, churn, churn_pipeline, make_churn(600, seed=31), NOW - 30 * timedelta(minutes=1)
    )
    AlertService(rv, providers=[drift_signals.signals]).evaluate(NOW)
    registry = CollectorRegistry()
    AlertGauges(registry).refresh(rv.store.alerts.tracks(), rv.store.alerts.open_alerts())
    age = MonitoringService(rv).drift("churn", NOW - HOUR, NOW).feature("age")
    assert age.method == "ks" and age.p_value is not None
    score = registry.get_sample_value(
        "relevo_drift_score", {"deployment": "churn", "feature": "age"}
    )
    assert score == pytest.approx(age.statistic)
