"""The model registry through the Python API: versions, metadata, signatures, reference
profiles, content-addressed artifacts and the errors users meet."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sqlalchemy import update

import relevo
from relevo.datasets import CHURN_CATEGORICAL, CHURN_FEATURES, CHURN_NUMERIC, CHURN_TARGET
from relevo.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from relevo.monitoring.profile import CategoricalProfile, NumericProfile
from relevo.registry.registry import LibraryVersionWarning
from relevo.registry.types import ModelVersion
from relevo.store.tables import model_versions


def register(rv: relevo.Relevo, model: Any, reference: Any, name: str = "churn", **kw: Any):
    return rv.registry.register(name, model, reference, target=CHURN_TARGET, **kw)


def artifact_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts").rglob("*") if p.is_file())


# --------------------------------------------------------------------------- versions


def test_versions_increment_per_name_and_never_change(rv, churn_pipeline, churn_frame):
    first = register(rv, churn_pipeline, churn_frame, tags={"stage": "first"})
    second = register(rv, churn_pipeline, churn_frame, tags={"stage": "second"})
    other = register(rv, churn_pipeline, churn_frame, name="churn-eu")

    assert (first.ref, second.ref, other.ref) == ("churn:1", "churn:2", "churn-eu:1")
    # registering version 2 left version 1 exactly as it was
    assert rv.registry.get("churn:1") == first
    assert rv.registry.get("churn:2") == second
    assert rv.registry.get("churn").version == 2  # a bare name is the latest
    assert [v.ref for v in rv.registry.list()] == ["churn:1", "churn:2", "churn-eu:1"]
    assert [v.ref for v in rv.registry.list("churn-eu")] == ["churn-eu:1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.version = 3  # type: ignore[misc]


def test_metadata_is_stored(rv, relevo_home, database_url, churn_pipeline, churn_frame):
    register(
        rv,
        churn_pipeline,
        churn_frame,
        description="logistic regression on the churn features",
        tags={"team": "growth", "owner": "ana"},
        metrics={"auc": 0.83, "log_loss": 0.41},
        lineage={"data": "make_churn(3000, seed=1)", "commit": "abc123"},
    )
    # read back through a new handle: what is stored, not what register() returned
    with relevo.Relevo(home=relevo_home, database_url=database_url) as fresh:
        version = fresh.registry.get("churn:1")

    assert version.description == "logistic regression on the churn features"
    assert version.tags == {"team": "growth", "owner": "ana"}
    assert version.metrics == {"auc": 0.83, "log_loss": 0.41}
    assert version.lineage == {"data": "make_churn(3000, seed=1)", "commit": "abc123"}
    assert version.library_versions["sklearn"] == sklearn.__version__
    assert version.flavor == "sklearn"
    assert version.task == "binary"
    assert version.classes == [0, 1]
    assert version.positive_class == 1
    assert version.target == CHURN_TARGET
    assert version.created_at.tzinfo is not None


# --------------------------------------------------------------------------- loading


def test_load_predicts_like_the_original(rv, churn_pipeline, churn_frame):
    register(rv, churn_pipeline, churn_frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LibraryVersionWarning)  # same libraries: no warning
        loaded = rv.registry.load("churn:1")

    inputs = churn_frame[CHURN_FEATURES]
    raw = loaded.model.predict(inputs)
    assert loaded.version.ref == "churn:1"
    assert loaded.model.classes == [0, 1]
    np.testing.assert_allclose(raw.probabilities, churn_pipeline.predict_proba(inputs), rtol=1e-12)


def test_old_library_version_warns_on_load(rv, churn_pipeline, churn_frame):
    version = register(rv, churn_pipeline, churn_frame)
    with rv.store.engine.begin() as conn:
        conn.execute(
            update(model_versions)
            .where(model_versions.c.name == "churn", model_versions.c.version == 1)
            .values(library_versions={**version.library_versions, "sklearn": "0.20.0"})
        )

    expected = re.escape(f"sklearn 0.20.0 -> {sklearn.__version__}")
    with pytest.warns(LibraryVersionWarning, match=expected):
        loaded = rv.registry.load("churn:1")
    # a warning, not a refusal: the model still predicts
    assert loaded.model.predict(churn_frame[CHURN_FEATURES].head(3)).probabilities.shape == (3, 2)


# --------------------------------------------------------------------------- signature


def test_signature_holds_the_model_inputs(rv, churn_pipeline, churn_frame):
    # columns in another order, plus the id and the label: the model's own order wins
    shuffled = churn_frame[list(reversed(churn_frame.columns))]
    signature = register(rv, churn_pipeline, shuffled).signature

    assert signature.names == CHURN_FEATURES  # no customer_id, no churned
    assert signature["age"].kind == "integer"
    assert signature["monthly_charges"].kind == "number"
    assert signature["contract"].kind == "string"
    assert signature["contract"].categories == tuple(sorted(churn_frame["contract"].unique()))
    assert signature["satisfaction"].nullable
    assert not signature["age"].nullable
    for column in CHURN_NUMERIC:
        spec = signature[column]
        assert (spec.min, spec.max) == (churn_frame[column].min(), churn_frame[column].max())
    for column in CHURN_CATEGORICAL:
        assert set(signature[column].categories) == set(churn_frame[column])


# --------------------------------------------------------------------------- reference profile


@pytest.fixture
def profile(rv, churn_pipeline, churn_frame):
    register(rv, churn_pipeline, churn_frame)
    return rv.registry.reference_profile("churn:1")


def test_profile_covers_the_inputs_and_the_prediction(profile, churn_frame):
    assert list(profile.inputs.columns) == CHURN_FEATURES
    assert list(profile.prediction.columns) == ["prediction"]
    assert profile.inputs.n_rows == len(churn_frame)


def test_numeric_profiles_match_pandas(profile, churn_frame):
    for column in CHURN_NUMERIC:
        prof = profile.inputs.columns[column]
        values = churn_frame[column]
        assert isinstance(prof, NumericProfile), column
        assert int(prof.counts.sum()) == prof.count == values.notna().sum(), column
        assert prof.missing == values.isna().sum(), column
        assert prof.mean == pytest.approx(values.mean(), rel=1e-12), column
        assert prof.std == pytest.approx(values.std(), rel=1e-9), column
        assert (prof.min, prof.max) == (values.min(), values.max()), column
        # the bins' edges run from the reference's min to its max
        assert (prof.edges[0], prof.edges[-1]) == (values.min(), values.max()), column


def test_missing_share_matches_the_frame(profile, churn_frame):
    share = churn_frame["satisfaction"].isna().mean()
    assert share > 0  # the generator leaves ~4 % of satisfaction missing
    assert profile.inputs.columns["satisfaction"].missing_share == pytest.approx(share)
    summary = {row["column"]: row for row in profile.summary()}
    assert summary["satisfaction"]["missing_share"] == pytest.approx(share)
    assert summary["age"]["missing_share"] == 0


def test_categorical_profiles_match_value_counts(profile, churn_frame):
    for column in CHURN_CATEGORICAL:
        prof = profile.inputs.columns[column]
        assert isinstance(prof, CategoricalProfile), column
        expected = churn_frame[column].value_counts(normalize=True).to_dict()
        shares = dict(zip(prof.categories, prof.proportions(), strict=True))
        assert shares == pytest.approx(expected, rel=1e-12), column
        assert prof.missing == 0, column


def test_prediction_profile_is_the_positive_class_probability(profile, churn_pipeline, churn_frame):
    scores = churn_pipeline.predict_proba(churn_frame[CHURN_FEATURES])[:, 1]
    prof = profile.prediction.columns["prediction"]
    assert isinstance(prof, NumericProfile)
    assert prof.count == len(churn_frame)
    assert prof.mean == pytest.approx(scores.mean(), rel=1e-12)
    assert prof.std == pytest.approx(scores.std(ddof=1), rel=1e-9)
    assert (prof.min, prof.max) == pytest.approx((scores.min(), scores.max()), rel=1e-12)


# --------------------------------------------------------------------------- artifacts


def test_artifact_is_stored_under_home_with_its_sha256(rv, relevo_home, churn_files):
    version = register(rv, churn_files.model, churn_files.reference)

    stored = relevo_home / "artifacts" / version.artifact_path
    content = stored.read_bytes()
    assert artifact_files(relevo_home) == [stored]
    assert content == churn_files.model.read_bytes()
    assert version.artifact_sha256 == hashlib.sha256(content).hexdigest()
    assert version.artifact_size == len(content)


def test_same_file_twice_shares_one_artifact(rv, relevo_home, churn_files):
    first = register(rv, churn_files.model, churn_files.reference)
    second = register(rv, churn_files.model, churn_files.reference)
    other = register(rv, churn_files.model, churn_files.reference, name="churn-eu")

    assert (first.version, second.version) == (1, 2)
    assert first.artifact_sha256 == second.artifact_sha256 == other.artifact_sha256
    assert first.artifact_path == second.artifact_path == other.artifact_path
    assert len(artifact_files(relevo_home)) == 1


def test_tampered_artifact_is_refused(rv, relevo_home, churn_pipeline, churn_frame):
    version = register(rv, churn_pipeline, churn_frame)
    stored = relevo_home / "artifacts" / version.artifact_path
    with stored.open("ab") as fh:
        fh.write(b"\0")

    for ref in ("churn:1", version):
        with pytest.raises(IntegrityError, match="changed since it was registered"):
            rv.registry.load(ref)
    # the metadata itself is intact
    assert rv.registry.get("churn:1").artifact_sha256 == version.artifact_sha256


# --------------------------------------------------------------------------- errors


def assert_nothing_stored(rv: relevo.Relevo, home: Path) -> None:
    assert rv.registry.list() == []
    assert not (home / "artifacts").exists() or artifact_files(home) == []


def test_unreadable_artifact(rv, relevo_home, broken_files, churn_files):
    with pytest.raises(InvalidInputError, match=r"cannot load model\.joblib"):
        register(rv, broken_files.text_model, churn_files.reference)
    assert_nothing_stored(rv, relevo_home)


def test_unknown_artifact_type_suggests_a_flavor(rv, relevo_home, churn_files):
    with pytest.raises(InvalidInputError, match="cannot tell the flavor") as caught:
        register(rv, churn_files.reference, churn_files.reference)
    assert "--flavor" in str(caught.value)
    assert "churn.csv" in str(caught.value)
    assert_nothing_stored(rv, relevo_home)


def test_missing_artifact(rv, tmp_path, churn_files):
    with pytest.raises(InvalidInputError, match="artifact not found"):
        register(rv, tmp_path / "nowhere.joblib", churn_files.reference)


def test_reference_lacking_a_model_column(rv, relevo_home, churn_pipeline, churn_frame):
    with pytest.raises(InvalidInputError, match="tenure_months") as caught:
        register(rv, churn_pipeline, churn_frame.drop(columns="tenure_months"))
    assert [p.column for p in caught.value.problems] == ["tenure_months"]
    assert_nothing_stored(rv, relevo_home)


def test_reference_file_lacking_a_model_column(rv, relevo_home, churn_files, broken_files):
    with pytest.raises(InvalidInputError, match="tenure_months"):
        register(rv, churn_files.model, broken_files.no_tenure)
    assert_nothing_stored(rv, relevo_home)


def test_target_absent_from_the_reference(rv, relevo_home, churn_pipeline, churn_frame):
    with pytest.raises(InvalidInputError, match="'churned'") as caught:
        register(rv, churn_pipeline, churn_frame.drop(columns=CHURN_TARGET))
    assert [p.column for p in caught.value.problems] == [CHURN_TARGET]
    assert_nothing_stored(rv, relevo_home)


@pytest.mark.parametrize("source", ["header-only csv", "empty frame"])
def test_empty_reference(rv, relevo_home, churn_pipeline, churn_frame, broken_files, source):
    reference = broken_files.header_only if source == "header-only csv" else churn_frame.head(0)
    with pytest.raises(InvalidInputError, match="empty"):
        register(rv, churn_pipeline, reference)
    assert_nothing_stored(rv, relevo_home)


INVALID_NAMES = ["", "bad name", "-churn", "churn/eu", "churn:1", "churn\n", "x" * 201]


def test_invalid_model_names(rv, relevo_home, churn_pipeline, churn_frame):
    for name in INVALID_NAMES:
        with pytest.raises(InvalidInputError, match=re.escape(f"invalid model name {name!r}")):
            register(rv, churn_pipeline, churn_frame, name=name)
    assert_nothing_stored(rv, relevo_home)


def test_longest_valid_name_is_accepted(rv, churn_pipeline, churn_frame):
    name = "c" * 200
    assert register(rv, churn_pipeline, churn_frame, name=name).ref == f"{name}:1"


def test_unknown_versions(rv, churn_pipeline, churn_frame):
    register(rv, churn_pipeline, churn_frame)
    for ref in ("churn:7", "nope:1", "nope"):
        for call in (rv.registry.get, rv.registry.load, rv.registry.reference_profile):
            with pytest.raises(NotFoundError, match=f"model {ref} not found") as caught:
                call(ref)
            assert "registered models: churn" in str(caught.value)


MALFORMED_REFS = [
    "churn:x",
    "churn:",
    ":1",
    "churn:0",
    "churn:-1",
    "churn:1_0",
    "churn: 1",
    "churn:+1",
]


def test_malformed_refs(rv, churn_pipeline, churn_frame):
    register(rv, churn_pipeline, churn_frame)
    for ref in MALFORMED_REFS:
        for call in (rv.registry.get, rv.registry.load, rv.registry.reference_profile):
            with pytest.raises(InvalidInputError, match=re.escape(repr(ref))):
                call(ref)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://nobody@127.0.0.1:1/x", "cannot reach the database"),
        ("not a database url", "not a valid database URL"),
    ],
)
def test_unreachable_database(tmp_path, url, message):
    with pytest.raises(UnavailableError, match=message):
        relevo.Relevo(home=tmp_path / "home", database_url=url)


def test_model_version_round_trips_to_dict(rv, churn_pipeline, churn_frame):
    version = register(rv, churn_pipeline, churn_frame, tags={"team": "growth"})
    data = version.to_dict()
    assert isinstance(version, ModelVersion)
    assert data["ref"] == "churn:1"
    assert data["artifact"]["sha256"] == version.artifact_sha256
    assert [c["name"] for c in data["signature"]["columns"]] == CHURN_FEATURES
    assert pd.Timestamp(data["created_at"]) == pd.Timestamp(version.created_at)


def test_registering_a_good_file_again_repairs_a_damaged_stored_copy(rv, churn_files):
    first = rv.registry.register(
        "churn", churn_files.model, churn_files.reference, target="churned"
    )
    stored = rv.registry.artifacts.path(first.artifact_path)
    with stored.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError):
        rv.registry.load(first.ref)
    second = rv.registry.register(
        "churn", churn_files.model, churn_files.reference, target="churned"
    )
    assert second.artifact_sha256 == first.artifact_sha256
    assert second.artifact_size == churn_files.model.stat().st_size
    rv.registry.load(second.ref)  # verified and loads
    rv.registry.load(first.ref)  # the same content: the first version is repaired too


def _small(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.integers(0, 10, n), "c": rng.normal(size=n)}
    )
    return x, (x["a"] + rng.normal(size=n) > 0).astype(int)


@pytest.mark.parametrize("labels", [None, {0: "stay", 1: "leave"}])
def test_a_classifier_without_predict_proba_is_refused_saying_why(rv, labels):
    """A LinearSVC was registered as a regressor (its labels served as "values"); with text
    labels registration failed blaming the reference ("could not convert string to float")."""
    from sklearn.svm import LinearSVC

    x, y = _small()
    model = LinearSVC().fit(x, y if labels is None else y.map(labels))
    with pytest.raises(InvalidInputError, match=r"without predict_proba.*CalibratedClassifierCV"):
        rv.registry.register("svc", model, x.assign(y=y), target="y")
    assert rv.registry.list() == []


def test_a_reference_with_duplicate_column_names_is_refused_naming_them(rv):
    x, y = _small()
    from sklearn.linear_model import LogisticRegression

    x.columns = ["a", "a", "c"]
    model = LogisticRegression().fit(x.to_numpy(), y)
    with pytest.raises(InvalidInputError, match="more than once") as caught:
        rv.registry.register("dup", model, x.assign(y=y), target="y")
    assert [p.column for p in caught.value.problems] == ["a"]


def test_a_pipeline_with_a_lambda_is_refused_saying_why_not_with_a_pickle_traceback(
    rv, churn_frame
):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = churn_frame[[*CHURN_NUMERIC, "churned"]].fillna(0)
    model = make_pipeline(FunctionTransformer(lambda X: X), LogisticRegression())
    model.fit(frame[CHURN_NUMERIC], frame["churned"])
    with pytest.raises(InvalidInputError, match=r"a lambda .* cannot be pickled"):
        rv.registry.register("churn", model, frame, target="churned")
    assert rv.registry.list() == []  # nothing half-registered


@pytest.mark.parametrize("kind", ["series", "array", "list"])
def test_a_reference_that_is_not_a_frame_or_a_path_is_refused_saying_so(
    rv, churn_pipeline, churn_frame, kind
):
    reference = {
        "series": churn_frame["age"],
        "array": churn_frame.to_numpy(),
        "list": churn_frame.to_dict("records"),
    }[kind]
    with pytest.raises(InvalidInputError, match="must be a DataFrame or the path"):
        rv.registry.register("churn", churn_pipeline, reference, target="churned")


def test_a_reference_csv_keeps_codes_with_a_leading_zero_as_text(rv, tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    plan = rng.choice(["01", "02", "10"], 600)
    x = rng.normal(size=600)
    frame = pd.DataFrame(
        {"plan": plan, "x": x, "churned": ((plan == "01") + 0.3 * x > 0.5).astype(int)}
    )
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["plan"]), ("n", "passthrough", ["x"])]
    )
    model = make_pipeline(encode, LogisticRegression()).fit(frame[["plan", "x"]], frame.churned)
    frame.to_csv(tmp_path / "train.csv", index=False)  # "01" as pandas would read it: 1
    version = rv.registry.register("plan", model, tmp_path / "train.csv", target="churned")
    assert {c.name: c.kind for c in version.signature.columns} == {"plan": "string", "x": "number"}
    spec = next(c for c in version.signature.columns if c.name == "plan")
    assert set(spec.categories) == {"01", "02", "10"}


def test_a_version_whose_artifact_is_missing_is_not_deployed(rv, churn_pipeline, churn_frame):
    # every server would fail to load it and keep what it serves, while `relevo status`
    # showed it as the champion
    first = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", first.ref)
    second = rv.registry.register(
        "churn", churn_pipeline, churn_frame.sample(frac=1, random_state=1), target="churned"
    )
    path = rv.registry.artifacts.path(second.artifact_path)
    path.unlink()
    for strategy in ("basic", "canary"):
        with pytest.raises(NotFoundError, match="artifact of churn:2 is missing"):
            rv.deployments.deploy("churn", second.ref, strategy=strategy, weight=0.1
                                  if strategy == "canary" else None)  # fmt: skip
    assert rv.deployments.get("churn").model_ref == first.ref


# 9. registry: any TypeError/AttributeError while saving is blamed on a lambda
class _HoldsALock:
    def __init__(self):
        import threading

        self._lock = threading.Lock()

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_a_model_that_cannot_be_pickled_for_another_reason_is_not_blamed_on_a_lambda(rv):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    with pytest.raises(InvalidInputError) as caught:
        rv.registry.register("m", _HoldsALock(), frame, target="y")
    assert "lambda" not in str(caught.value), str(caught.value)
