"""Fixtures shared by the whole suite: a fresh store per test on every backend, a churn model
trained once per session, and the real CLI run in-process.

PostgreSQL runs only when RELEVO_TEST_DATABASE_URL names a database (e.g.
postgresql://postgres@127.0.0.1:5432/test); each test then gets its own schema, dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import joblib
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner, Result

import relevo
from relevo.datasets import (
    CHURN_CATEGORICAL,
    CHURN_FEATURES,
    CHURN_NUMERIC,
    CHURN_TARGET,
    make_churn,
)
from relevo.settings import reset_settings

# Rich's consoles fix their width from COLUMNS when they are made (`relevo.cli.output` makes
# its own at import): a COLUMNS of the environment running the suite (pytest-xdist's workers
# set 80) would win over the CLI_ENV every invocation gives
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

#: read once at import: the autouse fixture below clears RELEVO_* settings, not this one
POSTGRES_URL = os.environ.get("RELEVO_TEST_DATABASE_URL")

#: a wide, fixed terminal so Rich tables never truncate what tests look for
CLI_ENV = {"COLUMNS": "200", "LINES": "50"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RELEVO_* setting from the developer's shell reaches a test; settings are reread."""
    for key in list(os.environ):
        if key.startswith("RELEVO_") and not key.startswith("RELEVO_TEST_"):
            monkeypatch.delenv(key)
    reset_settings()
    yield
    reset_settings()


# --------------------------------------------------------------------------- store


def _admin_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # what relevo's extra installs
    return create_engine(parsed, poolclass=NullPool)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not POSTGRES_URL,
                    reason="set RELEVO_TEST_DATABASE_URL to run against PostgreSQL",
                ),
            ],
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'relevo.db').as_posix()}"
        return
    assert POSTGRES_URL is not None
    schema = f"relevo_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            # a connection a test forgot to close must fail the drop, not hang the suite
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def relevo_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def rv(relevo_home: Path, database_url: str) -> Iterator[relevo.Relevo]:
    """A relevo handle on a fresh home and store."""
    handle = relevo.Relevo(home=relevo_home, database_url=database_url)
    try:
        yield handle
    finally:
        handle.close()


# --------------------------------------------------------------------------- churn model


@pytest.fixture(scope="session")
def churn_frame() -> pd.DataFrame:
    """3000 customers: customer_id, the CHURN_FEATURES and the label `churned`."""
    return make_churn(3000, seed=1)


@pytest.fixture(scope="session")
def churn_pipeline(churn_frame: pd.DataFrame) -> Pipeline:
    """A fitted scikit-learn pipeline on the churn features (declares feature_names_in_)."""
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), CHURN_NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CHURN_CATEGORICAL),
        ]
    )
    pipeline = Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=1000))])
    return pipeline.fit(churn_frame[CHURN_FEATURES], churn_frame[CHURN_TARGET])


@pytest.fixture(scope="session")
def numeric_pipeline(churn_frame: pd.DataFrame) -> Pipeline:
    """A fitted scikit-learn pipeline on the churn data's number columns alone (an
    all-numeric model: what relevo serves with a NumPy matrix)."""
    pipeline = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())
    return pipeline.fit(churn_frame[CHURN_NUMERIC], churn_frame[CHURN_TARGET])


class ChurnFiles(NamedTuple):
    model: Path
    reference: Path


@pytest.fixture
def appended(monkeypatch: pytest.MonkeyPatch) -> Callable[[type], list[bytes]]:
    """`appended(cls)`: the payloads every later `cls.append_many` call writes (a spool's, a
    held segment's), in order; the appends still happen."""

    def spy(cls: type) -> list[bytes]:
        seen: list[bytes] = []
        real = cls.append_many  # type: ignore[attr-defined]

        def append_many(self: Any, items: list[bytes]) -> Any:
            seen.extend(items)
            return real(self, items)

        monkeypatch.setattr(cls, "append_many", append_many)
        return seen

    return spy


@pytest.fixture
def churn_files(tmp_path: Path, churn_pipeline: Pipeline, churn_frame: pd.DataFrame) -> ChurnFiles:
    """The churn pipeline as a joblib file and the churn frame as CSV, as users hand them in."""
    folder = tmp_path / "files"
    folder.mkdir()
    model = folder / "model.joblib"
    joblib.dump(churn_pipeline, model)
    reference = folder / "churn.csv"
    churn_frame.to_csv(reference, index=False)
    return ChurnFiles(model, reference)


class BrokenFiles(NamedTuple):
    text_model: Path  # a text file named model.joblib
    no_tenure: Path  # the churn CSV without the tenure_months column
    header_only: Path  # the churn CSV's header and no row


@pytest.fixture
def broken_files(tmp_path: Path, churn_frame: pd.DataFrame) -> BrokenFiles:
    """Inputs users get wrong, for the error tests of the Python API and the CLI."""
    folder = tmp_path / "broken"
    folder.mkdir()
    text_model = folder / "model.joblib"
    text_model.write_text("this is not a pickle\n")
    no_tenure = folder / "no_tenure.csv"
    churn_frame.drop(columns="tenure_months").to_csv(no_tenure, index=False)
    header_only = folder / "header_only.csv"
    churn_frame.head(0).to_csv(header_only, index=False)
    return BrokenFiles(text_model, no_tenure, header_only)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(relevo_home: Path, database_url: str) -> Callable[..., Result]:
    """Run `relevo --home HOME --database-url URL ARGS...` in-process; returns click's Result
    (exit_code, stdout and stderr apart)."""
    from relevo.cli.main import app
    from relevo.cli.state import state

    runner = CliRunner()

    def run(*args: str | Path) -> Result:
        argv = ["--home", str(relevo_home), "--database-url", database_url]
        argv += [str(a) for a in args]
        try:
            return runner.invoke(app, argv, env=CLI_ENV)
        finally:
            # the CLI leaves its handle open (a process exits); tests must not leak connections
            state.close()

    return run


# --------------------------------------------------------------------------- S3 bucket


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3-compatible server (moto's server mode, a real process); its endpoint URL."""
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import time

    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]', in the dev extra)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (log: {log.name})") from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the local S3 server: its `s3://bucket/prefix` URL. The AWS
    credentials of the environment are the fake ones moto accepts (for this process and any
    server process it starts)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"relevo-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/models"


# --------------------------------------------------------------------------- a model's NaN


@pytest.fixture
def nan_for_the_old(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`nan_for_the_old(age)`: from then on, every scikit-learn model of the test answers NaN
    probabilities for the rows of customers aged `age` or more (a model gone wrong on some
    rows), its usual answer for the others."""
    from relevo.registry.flavors.base import RawOutput
    from relevo.registry.flavors.sklearn import EstimatorModel

    real = EstimatorModel.predict

    def patch(age: int) -> None:
        def predict(self: Any, frame: pd.DataFrame) -> RawOutput:
            out = real(self, frame)
            assert out.probabilities is not None
            probabilities = out.probabilities.copy()
            probabilities[frame["age"].to_numpy() >= age] = float("nan")
            return RawOutput(probabilities=probabilities)

        monkeypatch.setattr(EstimatorModel, "predict", predict)

    return patch
