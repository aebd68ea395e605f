"""Artifacts in an S3-compatible bucket (a real moto server): a version registered through one
home loads through another, and an object changed in the bucket is refused."""

from __future__ import annotations

from pathlib import Path

import boto3
import numpy as np
import pytest

import relevo
from relevo.datasets import CHURN_FEATURES
from relevo.errors import IntegrityError, InvalidInputError, NotFoundError, UnavailableError
from relevo.registry.artifacts import FolderArtifactStore, tree_sha256
from relevo.registry.bucket import BucketArtifactStore
from relevo.settings import Settings, reset_settings


def _handle(home: Path, database_url: str, bucket: str, endpoint: str) -> relevo.Relevo:
    settings = Settings(
        home=home, database_url=database_url, artifacts_url=bucket, s3_endpoint_url=endpoint
    )
    return relevo.Relevo(settings=settings)


def _object(bucket_url: str, rel: str) -> tuple[str, str]:
    bucket, _, prefix = bucket_url.removeprefix("s3://").partition("/")
    return bucket, f"{prefix}/{rel}"


def test_a_version_registered_through_one_home_loads_through_another(
    tmp_path, database_url, s3_bucket, s3_endpoint, churn_pipeline, churn_frame
):
    with _handle(tmp_path / "a", database_url, s3_bucket, s3_endpoint) as first:
        version = first.registry.register("churn", churn_pipeline, churn_frame, target="churned")
        assert first.registry.artifacts.location == s3_bucket
        assert not (tmp_path / "a" / "artifacts").exists()  # nothing in the folder store
    bucket, key = _object(s3_bucket, version.artifact_path)
    stored = boto3.client("s3", endpoint_url=s3_endpoint).get_object(Bucket=bucket, Key=key)
    assert stored["ContentLength"] == version.artifact_size

    with _handle(tmp_path / "b", database_url, s3_bucket, s3_endpoint) as second:
        loaded = second.registry.load("churn:1")
    rows = churn_frame[CHURN_FEATURES].head(50)
    expected = churn_pipeline.predict_proba(rows)
    np.testing.assert_allclose(loaded.model.predict(rows).probabilities, expected)
    assert (tmp_path / "b" / "artifact-cache" / version.artifact_path).is_file()


def test_an_object_changed_in_the_bucket_is_refused(
    tmp_path, database_url, s3_bucket, s3_endpoint, churn_pipeline, churn_frame
):
    with _handle(tmp_path / "a", database_url, s3_bucket, s3_endpoint) as first:
        version = first.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    bucket, key = _object(s3_bucket, version.artifact_path)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body + b"tampered")

    second = _handle(tmp_path / "b", database_url, s3_bucket, s3_endpoint)
    with second, pytest.raises(IntegrityError) as refused:
        second.registry.load(version)
    message = str(refused.value)
    assert f"s3://{bucket}/{key}" in message
    assert f"expected {version.artifact_sha256}" in message
    assert "refusing to load it" in message
    # nothing unverified is left in the cache for a later load to pick up
    assert not (tmp_path / "b" / "artifact-cache" / version.artifact_path).exists()


def test_the_cli_refuses_a_tampered_object_with_exit_code_5(
    tmp_path, database_url, s3_bucket, s3_endpoint, churn_pipeline, churn_frame, cli, monkeypatch
):
    with _handle(tmp_path / "a", database_url, s3_bucket, s3_endpoint) as first:
        version = first.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    bucket, key = _object(s3_bucket, version.artifact_path)
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=key, Body=b"x")
    monkeypatch.setenv("RELEVO_ARTIFACTS_URL", s3_bucket)
    monkeypatch.setenv("RELEVO_S3_ENDPOINT_URL", s3_endpoint)
    reset_settings()
    sample = tmp_path / "sample.csv"
    churn_frame.head(100).to_csv(sample, index=False)
    result = cli("validate", "churn:1", "--data", str(sample))
    assert result.exit_code == 5, result.output
    assert "has changed since it was registered" in result.stderr
    assert "Traceback" not in result.output


def test_a_damaged_cache_copy_is_fetched_again(tmp_path, s3_bucket, s3_endpoint):
    store = BucketArtifactStore(s3_bucket, cache=tmp_path / "cache", endpoint_url=s3_endpoint)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    sha, rel, size = store.put(model)
    assert size == 7000
    path = store.verified_path(rel, sha)
    path.write_bytes(b"changed on this disk")
    again = store.verified_path(rel, sha)
    assert again.read_bytes() == b"weights" * 1000


def test_a_folder_artifact_round_trips_with_its_digest(tmp_path, s3_bucket, s3_endpoint):
    folder = tmp_path / "mlflow-model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "data" / "model.pkl").write_bytes(b"\x00\x01" * 500)
    store = BucketArtifactStore(s3_bucket, cache=tmp_path / "cache", endpoint_url=s3_endpoint)
    sha, rel, size = store.put(folder)
    assert sha == tree_sha256(folder) and size == 12 + 1000
    other = BucketArtifactStore(s3_bucket, cache=tmp_path / "other", endpoint_url=s3_endpoint)
    fetched = other.verified_path(rel, sha)
    assert fetched.is_dir() and tree_sha256(fetched) == sha
    assert (fetched / "data" / "model.pkl").read_bytes() == b"\x00\x01" * 500


def test_a_missing_object_is_not_found(tmp_path, s3_bucket, s3_endpoint):
    store = BucketArtifactStore(s3_bucket, cache=tmp_path / "cache", endpoint_url=s3_endpoint)
    with pytest.raises(NotFoundError, match="missing from the bucket: s3://"):
        store.verified_path("ab/" + "ab" * 32 + "/model.joblib", "ab" * 32)


def test_a_bucket_that_does_not_exist_says_which_and_how_to_authenticate(
    tmp_path, s3_bucket, s3_endpoint
):
    store = BucketArtifactStore(
        "s3://no-such-bucket-here/x", cache=tmp_path / "cache", endpoint_url=s3_endpoint
    )
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    with pytest.raises(UnavailableError) as failed:
        store.put(model)
    assert "s3://no-such-bucket-here/x" in str(failed.value)
    assert "RELEVO_S3_ENDPOINT_URL" in str(failed.value)


def test_the_setting_chooses_the_store(tmp_path):
    folder = Settings(home=tmp_path, artifacts_url=str(tmp_path / "shared"))
    with relevo.Relevo(settings=folder) as rv:
        assert isinstance(rv.registry.artifacts, FolderArtifactStore)
        assert rv.registry.artifacts.location == str(tmp_path / "shared")
    with relevo.Relevo(settings=Settings(home=tmp_path)) as rv:
        assert rv.registry.artifacts.location == str(tmp_path / "artifacts")
    with pytest.raises(InvalidInputError, match="unknown scheme 'gs'"):
        relevo.Relevo(settings=Settings(home=tmp_path, artifacts_url="gs://bucket/x"))


def test_an_object_planted_with_dot_dot_in_a_folder_artifact_is_never_written_outside(
    tmp_path, s3_bucket, s3_endpoint
):
    """Whoever can write to the bucket (not to the server) added an object named
    `<artifact>/../../../../../../escaped.txt` under a folder artifact: a replica fetching it
    wrote that file outside its cache, and the sha256 of what landed inside still matched."""
    model = tmp_path / "model"  # a folder artifact, as an MLflow model is stored
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    store = BucketArtifactStore(
        s3_bucket, cache=tmp_path / "home" / "cache", endpoint_url=s3_endpoint
    )
    sha, rel, _ = store.put(model)
    bucket, _, prefix = s3_bucket.removeprefix("s3://").partition("/")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket=bucket,
        Key=f"{prefix}/{rel}/../../../../../../escaped.txt",
        Body=b"planted in the bucket",
    )
    with pytest.raises(IntegrityError, match="leads out of its folder"):
        store.verified_path(rel, sha)
    assert list(tmp_path.rglob("escaped.txt")) == []
