"""Batch scoring in chunks: same answers as the model, every row logged once, nothing logged by
a run that fails, the output checked before any work."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relevo.datasets import CHURN_FEATURES, make_churn
from relevo.errors import InvalidInputError
from relevo.serving.batch import score_file
from relevo.serving.batch_log import HeldLog
from relevo.serving.entries import LogEntry, encode, entry_size
from relevo.serving.log import open_prediction_log
from relevo.serving.records import frame_to_records
from relevo.serving.spool import HeldSegment, Orphan, store_folder
from relevo.serving.validation import validate_rows
from relevo.settings import reset_settings


@pytest.fixture
def deployed(rv, churn_pipeline, churn_frame):
    version = rv.registry.register("churn", churn_pipeline, churn_frame, target="churned")
    rv.deployments.deploy("churn", version.ref, key="customer_id")
    return version


def _spool_files(rv) -> list[str]:
    """What is left in the log's spool folder (held segments, segments to replay)."""
    folder = store_folder(rv.settings.home, rv.settings.resolved_database_url)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _held_rows(path) -> list[int]:
    """The rows of each record of a held segment, read from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return [entry_size(payload) for payload in Orphan(path, fd).records()]
    finally:
        os.close(fd)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_answer_like_the_model_and_log_every_row_once(
    rv, deployed, churn_pipeline, tmp_path, suffix, monkeypatch
):
    frame = make_churn(250, seed=4, id_start=500)
    source = tmp_path / f"in{suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
    output = tmp_path / f"out{suffix}"
    # entries are held in pieces of 25 rows (one store write each): 60-row chunks make 3
    monkeypatch.setattr(rv, "settings", rv.settings.model_copy(update={"log_flush_rows": 25}))
    done = score_file(rv, "churn", source, output, chunk_rows=60)  # 5 chunks, the last short
    assert done.rows == 250 and done.model == "churn:1"
    scored = pd.read_csv(output) if suffix == ".csv" else pd.read_parquet(output)
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-12)
    assert scored["customer_id"].tolist() == frame["customer_id"].tolist()
    assert scored["id"].is_unique
    assert rv.store.predictions.count("churn") == 250
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(r["id"] for r in stored) == sorted(scored["id"])
    assert _spool_files(rv) == []  # stored, so the handed-over segment is gone
    first = next(r for r in stored if r["routing_key"] == frame["customer_id"].iloc[0])
    assert json.loads(first["features"])["age"] == frame["age"].iloc[0]


def test_a_bad_output_is_refused_before_anything_is_scored(cli, rv, deployed, tmp_path):
    source = tmp_path / "in.csv"
    make_churn(20, seed=5).to_csv(source, index=False)
    wrong = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.xlsx")
    assert wrong.exit_code == 2 and ".csv or .parquet" in wrong.stderr
    nowhere = cli("predict", "churn", "--input", source, "--output", tmp_path / "no" / "o.csv")
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.stderr
    assert rv.store.predictions.count("churn") == 0


def test_a_missing_text_column_is_named_once_in_a_file_of_several_chunks(
    cli, rv, deployed, tmp_path, monkeypatch
):
    source = tmp_path / "in.csv"
    make_churn(250, seed=5).drop(columns="region").to_csv(source, index=False)
    monkeypatch.setenv("RELEVO_BATCH_CHUNK_ROWS", "60")  # 5 chunks, each without the column
    reset_settings()
    result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 2, result.stderr
    assert "1 problem(s)" in result.stderr and "Traceback" not in result.stderr
    assert "column 'region': required column is missing from the file" in result.stderr
    assert result.stderr.count("'region'") == 1
    assert rv.store.predictions.count("churn") == 0
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("output", [True, False])
def test_a_rejected_file_is_named_with_the_row_of_its_bad_cell(cli, rv, deployed, tmp_path, output):
    frame = make_churn(20, seed=5).astype({"age": object})
    frame.loc[7, "age"] = "x"
    bad = tmp_path / "customers.csv"
    frame.to_csv(bad, index=False)
    empty = tmp_path / "header_only.csv"
    frame.head(0).to_csv(empty, index=False)
    out = ["--output", tmp_path / "out.csv"] if output else []
    result = cli("predict", "churn", "--input", bad, *out)
    assert result.exit_code == 2
    assert (
        f"1 problem(s) in input file {bad}; nothing was scored: "
        "row 7, column 'age': cannot parse 'x' as an integer"
    ) in " ".join(result.stderr.split())
    result = cli("predict", "churn", "--input", empty, *out)
    assert result.exit_code == 2
    assert f"input file {empty} has no rows" in " ".join(result.stderr.split())
    assert rv.store.predictions.count("churn") == 0
    assert not (tmp_path / "out.csv").exists()


def test_a_gzip_compressed_csv_is_scored_in_chunks_like_the_csv(
    cli, rv, deployed, churn_pipeline, tmp_path, monkeypatch
):
    """`relevo predict --input customers.csv.gz` was refused: "unknown file type .gz"."""
    frame = make_churn(250, seed=4, id_start=500)
    source = tmp_path / "customers.csv.gz"
    frame.to_csv(source, index=False)  # gzip, by the suffix
    monkeypatch.setenv("RELEVO_BATCH_CHUNK_ROWS", "60")  # 5 chunks
    reset_settings()
    output = tmp_path / "scored.parquet"
    result = cli("predict", "churn", "--input", source, "--output", output)
    assert result.exit_code == 0, result.stderr
    assert "Scored 250 rows with churn:1" in result.stdout
    scored = pd.read_parquet(output)
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-12)
    assert scored["customer_id"].tolist() == frame["customer_id"].tolist()
    shown = cli("predict", "churn", "--input", source, "--json")  # scored in memory
    assert shown.exit_code == 0, shown.stderr
    answered = json.loads(shown.stdout)
    np.testing.assert_allclose([r["probability"] for r in answered], expected, rtol=1e-12)
    assert rv.store.predictions.count("churn") == 500


def test_a_gzip_compressed_csv_s_problems_name_the_file_and_row(cli, rv, deployed, tmp_path):
    def refused(source: Path) -> str:
        result = cli("predict", "churn", "--input", source, "--output", tmp_path / "out.csv")
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        return " ".join(result.stderr.split())

    frame = make_churn(20, seed=5).astype({"age": object})
    frame.loc[7, "age"] = "x"
    bad = tmp_path / "customers.csv.gz"
    frame.to_csv(bad, index=False)
    assert (
        f"1 problem(s) in input file {bad}; nothing was scored: "
        "row 7, column 'age': cannot parse 'x' as an integer"
    ) in refused(bad)
    cut = tmp_path / "cut.csv.gz"  # a download that stopped short
    make_churn(2000, seed=5).to_csv(cut, index=False)
    cut.write_bytes(cut.read_bytes()[:5000])
    assert (
        f"cannot read input file {cut}: Compressed file ended before the end-of-stream marker "
        "was reached"
    ) in refused(cut)
    plain = tmp_path / "plain.csv.gz"  # named .gz, not compressed
    make_churn(20, seed=5).to_csv(plain, index=False, compression=None)
    assert f"cannot read input file {plain}: Not a gzipped file" in refused(plain)
    assert rv.store.predictions.count("churn") == 0
    assert not (tmp_path / "out.csv").exists()


def test_a_run_that_fails_midway_logs_nothing_and_leaves_no_output(
    rv, deployed, tmp_path, monkeypatch
):
    from relevo.registry.flavors.sklearn import EstimatorModel

    real = EstimatorModel.predict
    calls = []

    def fails_on_the_third_chunk(self, frame):
        calls.append(len(frame))
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return real(self, frame)

    monkeypatch.setattr(EstimatorModel, "predict", fails_on_the_third_chunk)
    source = tmp_path / "in.csv"
    make_churn(200, seed=6).to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="disk on fire"):
        score_file(rv, "churn", source, output, chunk_rows=50)
    assert calls == [50, 50, 50]  # two chunks were scored before the failure
    assert not [t for t in threading.enumerate() if t.name.startswith("relevo-batch")]
    assert rv.store.predictions.count("churn") == 0
    assert not output.exists() and not list(tmp_path.glob(".out.parquet*"))
    assert _spool_files(rv) == []  # the held entries are deleted, not handed over
    # the same run again, once the failure is gone, logs each row once
    monkeypatch.setattr(EstimatorModel, "predict", real)
    assert score_file(rv, "churn", source, output, chunk_rows=50).rows == 200
    assert rv.store.predictions.count("churn") == 200


def test_numeric_text_follows_one_rule_in_files_and_json(rv, deployed, tmp_path):
    frame = make_churn(5, seed=7)
    text = frame.astype({"age": object})
    text.loc[1, "age"] = " 42 "  # numeric text: a number, in a file as in JSON
    source = tmp_path / "text.csv"
    text.to_csv(source, index=False)
    scored = pd.read_csv(score_file(rv, "churn", source, tmp_path / "o.csv").output)
    assert len(scored) == 5 and scored.loc[1, "age"] == 42
    row = frame_to_records(frame[CHURN_FEATURES].iloc[[1]])[0] | {"age": " 42 "}
    signature = deployed.signature
    assert validate_rows([row], signature).columns[CHURN_FEATURES.index("age")] == [42]
    text.loc[3, "age"] = "forty"
    text.to_csv(source, index=False)
    with pytest.raises(InvalidInputError) as info:
        score_file(rv, "churn", source, tmp_path / "o2.csv")
    assert [(p.row, p.column) for p in info.value.problems] == [(3, "age")]
    with pytest.raises(InvalidInputError) as json_info:
        validate_rows([row | {"age": "forty"}], signature)
    assert [(p.column, p.message) for p in json_info.value.problems] == [
        ("age", "expected a number, got 'forty'")
    ]
    assert not (tmp_path / "o2.csv").exists()


def test_a_bad_file_is_rejected_whole_with_the_problems_of_every_chunk(
    rv, deployed, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        rv, "settings", rv.settings.model_copy(update={"reject_unseen_categories": True})
    )
    frame = make_churn(250, seed=8)
    frame["age"] = frame["age"].astype(object)
    frame.loc[70, "age"] = "old"  # chunks of 60 rows: the second chunk
    frame.loc[130, "region"] = "atlantis"  # the third: a category the reference never had
    frame.loc[200, "contract"] = None  # the fourth: missing where the reference had no gaps
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    with pytest.raises(InvalidInputError) as info:
        score_file(rv, "churn", source, output, chunk_rows=60)
    assert [(p.row, p.column) for p in info.value.problems] == [
        (70, "age"),
        (130, "region"),
        (200, "contract"),
    ]
    assert "atlantis" in info.value.problems[1].message
    assert rv.store.predictions.count("churn") == 0
    assert not output.exists() and not list(tmp_path.glob(".out.parquet*"))
    assert _spool_files(rv) == []


def test_a_failed_write_leaves_no_output_and_logs_nothing(rv, deployed, tmp_path, monkeypatch):
    from relevo.serving.batch_io import ChunkWriter

    real = ChunkWriter.write
    calls = []

    def disk_full_on_the_second_chunk(self, frame):
        calls.append(len(frame))
        if len(calls) == 2:
            raise OSError("no space left on device")
        real(self, frame)

    monkeypatch.setattr(ChunkWriter, "write", disk_full_on_the_second_chunk)
    source = tmp_path / "in.csv"
    make_churn(200, seed=9).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    with pytest.raises(OSError, match="no space left"):
        score_file(rv, "churn", source, output, chunk_rows=50)
    assert rv.store.predictions.count("churn") == 0
    assert not output.exists() and not list(tmp_path.glob(".out.csv*"))
    assert _spool_files(rv) == []


@pytest.mark.parametrize(
    "suffix, text", [(".csv", "str"), (".parquet", "str"), (".parquet", "string")]
)
def test_missing_text_cells_reach_the_model_and_the_log_as_missing(
    rv, churn_pipeline, churn_frame, tmp_path, suffix, text
):
    reference = churn_frame.copy()
    reference.loc[:9, "region"] = None  # the reference has gaps: region may be missing
    rv.registry.register("churn", churn_pipeline, reference, target="churned")
    rv.deployments.deploy("churn", "churn:1", key="customer_id")
    frame = make_churn(120, seed=10)
    frame.loc[[3, 77], "region"] = None
    frame["region"] = frame["region"].astype(text)  # "string": missing as pd.NA, not NaN
    source = tmp_path / f"in{suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
    output = tmp_path / "out.csv"
    score_file(rv, "churn", source, output, chunk_rows=50)
    scored = pd.read_csv(output)
    expected = churn_pipeline.predict_proba(frame[CHURN_FEATURES])[:, 1]
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-12)
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    regions = {r["routing_key"]: json.loads(r["features"])["region"] for r in stored}
    assert regions[frame["customer_id"][77]] is None
    assert regions[frame["customer_id"][4]] == frame["region"][4]


def test_ids_made_in_bulk_continue_the_ids_made_one_list_at_a_time():
    from relevo.serving.ids import new_id_array, new_ids

    ids = new_ids(3) + new_id_array(1000).to_pylist() + new_ids(2)
    assert len(set(ids)) == len(ids) == 1005
    assert all(len(i) == 32 for i in ids)
    counters = [int(i[24:], 16) for i in ids]  # the per-process counter, 8 hex digits
    assert counters == list(range(counters[0], counters[0] + 1005))
    assert {i[12:24] for i in ids} == {ids[0][12:24]}  # one process: one node
    assert ids == sorted(ids)  # sorting ids sorts them by creation


def test_a_routing_key_too_long_to_store_is_named_by_row(rv, deployed, tmp_path):
    from relevo.serving.diagnosis import MAX_KEY_LENGTH

    frame = make_churn(120, seed=11)
    frame.loc[95, "customer_id"] = "C" * (MAX_KEY_LENGTH + 1)
    frame.loc[30, "customer_id"] = None  # a missing key is allowed: the row is not routed
    source = tmp_path / "keys.parquet"
    frame.to_parquet(source)
    with pytest.raises(InvalidInputError) as info:
        score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=50)
    assert [(p.row, p.column) for p in info.value.problems] == [(95, "customer_id")]
    frame.loc[95, "customer_id"] = "C0000095"
    frame.to_parquet(source)
    assert score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=50).rows == 120
    stored = [r for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(r["routing_key"] for r in stored if r["routing_key"] is not None) == sorted(
        frame["customer_id"].dropna()
    )
    assert sum(r["routing_key"] is None for r in stored) == 1


def test_entries_go_to_disk_as_the_run_goes_not_to_memory(rv, deployed, tmp_path, monkeypatch):
    from relevo.registry.flavors.sklearn import EstimatorModel

    monkeypatch.setattr(rv, "settings", rv.settings.model_copy(update={"log_flush_rows": 20}))
    real_add, real_predict = HeldLog.add, EstimatorModel.predict
    added: list[int] = []
    on_disk_at_last_chunk: list[int] = []

    def add_then_look_on_disk(self, entry):
        real_add(self, entry)
        added.append(entry.n)
        pieces = _held_rows(self.segment.path)
        # everything added so far is on disk, in pieces of at most 20 rows: nothing waits
        # in memory for the end of the run
        assert sum(pieces) == sum(added) == self.rows
        assert max(pieces) <= 20

    def predict(self, frame):
        if len(frame) < 50:  # the last, short chunk: the run is not over yet
            (held,) = _held_files(rv)
            on_disk_at_last_chunk.append(sum(_held_rows(held)))
        return real_predict(self, frame)

    monkeypatch.setattr(HeldLog, "add", add_then_look_on_disk)
    monkeypatch.setattr(EstimatorModel, "predict", predict)
    source = tmp_path / "in.parquet"
    make_churn(430, seed=12).to_parquet(source)
    assert score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=50).rows == 430
    assert added == [20, 20, 10] * 8 + [20, 10]  # each chunk's entries, 20 rows at most
    # at the last chunk's model call, 8 chunks are scored: all but the few the writer
    # thread may still have queued (two, and the one it is writing) are on disk already
    (at_last,) = on_disk_at_last_chunk
    assert 250 <= at_last <= 400
    assert rv.store.predictions.count("churn") == 430
    assert _spool_files(rv) == []


def _held_files(rv) -> list:
    folder = store_folder(rv.settings.home, rv.settings.resolved_database_url)
    return sorted(folder.glob(".*.held"))


def test_a_run_interrupted_while_its_rows_are_stored_loses_none(
    rv, deployed, tmp_path, monkeypatch
):
    real = HeldSegment.hand_over

    def interrupted(self):  # Ctrl-C (or a kill) right after the run succeeded
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(HeldSegment, "hand_over", interrupted)
    source = tmp_path / "in.csv"
    make_churn(120, seed=13).to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        score_file(rv, "churn", source, output, chunk_rows=50)
    assert output.exists()  # the run had succeeded: its rows are the log's now
    assert rv.store.predictions.count("churn") == 0
    assert [name.endswith(".spool") for name in _spool_files(rv)] == [True]
    # the next process to open the log stores them
    plog = open_prediction_log(rv)
    assert plog is not None
    plog.close()
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(stored) == sorted(pd.read_parquet(output)["id"])
    assert _spool_files(rv) == []


@pytest.mark.parametrize("streamed", [True, False])
def test_ctrl_c_while_scoring_says_nothing_was_written_or_logged_and_exits_130(
    cli, rv, deployed, tmp_path, monkeypatch, streamed
):
    """Ctrl-C during `relevo predict` exited 130 without a word."""
    from relevo.registry.flavors.sklearn import EstimatorModel

    real = EstimatorModel.predict
    calls = []

    def ctrl_c_on_the_third_chunk(self, frame):
        calls.append(len(frame))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(EstimatorModel, "predict", ctrl_c_on_the_third_chunk)
    monkeypatch.setenv("RELEVO_BATCH_CHUNK_ROWS", "50")
    reset_settings()
    source = tmp_path / "in.csv"
    make_churn(200, seed=6).to_csv(source, index=False)
    output = tmp_path / "out.parquet"
    args = ["--output", output] if streamed else ["--json"]
    result = cli("predict", "churn", "--input", source, *args)
    assert result.exit_code == 130
    unsaid = f"written to {output}" if streamed else "printed"
    assert (
        f"Interrupted: stopped after scoring 100 rows of {source}; nothing was {unsaid} or "
        "logged (run the command again to score the file)"
    ) in " ".join(result.stderr.split())
    assert "Traceback" not in result.output and result.stdout == ""
    assert not output.exists() and not list(tmp_path.glob(".out.parquet*"))
    assert rv.store.predictions.count("churn") == 0
    assert _spool_files(rv) == []


def test_ctrl_c_right_after_the_output_is_in_place_still_logs_every_row_once(
    cli, rv, deployed, tmp_path, monkeypatch
):
    """A Ctrl-C between the output's rename and the log's hand-over left a complete output
    file and none of its rows in the log (and no word of it)."""
    import signal

    from relevo.serving.batch_io import ChunkWriter

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    real = ChunkWriter.commit

    def ctrl_c_once_in_place(self):
        real(self)
        signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, on the very next instruction

    monkeypatch.setattr(ChunkWriter, "commit", ctrl_c_once_in_place)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        source = tmp_path / "in.csv"
        make_churn(120, seed=13).to_csv(source, index=False)
        output = tmp_path / "out.csv"
        result = cli("predict", "churn", "--input", source, "--output", output)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130, result.output
    (kept,) = _spool_files(rv)
    said = " ".join(result.stderr.split())
    assert (
        f"Interrupted: all 120 rows were scored and written to {output}; the prediction log "
        "had not stored them all: the rest are kept in "
    ) in said
    assert kept in said and "stored when relevo next opens the log" in said
    assert "Traceback" not in result.output
    # the next process to open the log stores them, each once
    plog = open_prediction_log(rv)
    assert plog is not None
    plog.close()
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(stored) == sorted(pd.read_csv(output)["id"])
    assert _spool_files(rv) == []


def test_ctrl_c_once_a_run_in_memory_succeeded_says_its_rows_were_logged(
    cli, rv, deployed, tmp_path, monkeypatch
):
    """Ctrl-C while the scored chunks were put together (the rows stored in the log already)
    said "nothing was scored, written or logged": run again, and every row was logged twice."""
    monkeypatch.setenv("RELEVO_BATCH_CHUNK_ROWS", "50")
    reset_settings()
    real = pd.concat

    def ctrl_c_joining_the_scored_chunks(parts, *args, **kwargs):
        if len(parts) == 4 and all("id" in part.columns for part in parts):
            raise KeyboardInterrupt
        return real(parts, *args, **kwargs)

    monkeypatch.setattr(pd, "concat", ctrl_c_joining_the_scored_chunks)
    source = tmp_path / "in.csv"
    make_churn(200, seed=6).to_csv(source, index=False)
    result = cli("predict", "churn", "--input", source, "--json")
    assert result.exit_code == 130
    said = " ".join(result.stderr.split())
    assert "Interrupted: all 200 rows were scored and logged; nothing was printed" in said
    assert result.stdout == "" and "Traceback" not in result.output
    assert rv.store.predictions.count("churn") == 200


def test_ctrl_c_once_a_streamed_run_succeeded_says_its_rows_were_written_and_logged(
    cli, rv, deployed, tmp_path, monkeypatch
):
    """Ctrl-C while the summary line was printed (the output in place, the rows logged) said
    "nothing was scored, written or logged"."""
    from relevo.cli import serving

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(serving.console, "print", ctrl_c)
    source = tmp_path / "in.csv"
    make_churn(200, seed=6).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    result = cli("predict", "churn", "--input", source, "--output", output)
    assert result.exit_code == 130
    said = " ".join(result.stderr.split())
    assert f"Interrupted: all 200 rows were scored, written to {output} and logged" in said
    assert "nothing" not in result.stderr and "Traceback" not in result.output
    assert len(pd.read_csv(output)) == 200
    assert rv.store.predictions.count("churn") == 200


@pytest.mark.slow
def test_a_real_ctrl_c_stops_relevo_predict_cleanly(rv, deployed, tmp_path, database_url):
    """SIGINT sent to a `relevo predict` process mid-run: the same clean stop."""
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "in.csv"
    make_churn(300_000, seed=15).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    partial = tmp_path / ".out.csv.partial"
    env = {
        **os.environ,
        "RELEVO_HOME": str(rv.settings.home),
        "RELEVO_DATABASE_URL": database_url,
        "RELEVO_BATCH_CHUNK_ROWS": "2000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "relevo", "predict", "churn", "-i", str(source), "-o", str(output)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as a terminal's Ctrl-C finds it, whatever the test runner does with SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the first chunks are scored and written
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    said = " ".join(err.split())
    assert said.startswith("Interrupted: stopped after scoring ") and "Traceback" not in err
    assert f"rows of {source}; nothing was written to {output} or logged" in said
    assert out == ""
    assert not output.exists() and not partial.exists()
    assert rv.store.predictions.count("churn") == 0
    assert _spool_files(rv) == []


def test_a_run_killed_before_it_succeeded_is_never_logged(rv, deployed, tmp_path):
    folder = store_folder(rv.settings.home, rv.settings.resolved_database_url)
    dead = HeldSegment(folder)
    entry = LogEntry("churn", "churn", 1, 0.0, ["dead-row"], {"age": [40]}, [{"label": 1}], 1.0)
    dead.append_many([encode(entry)])
    os.close(dead._fd)  # the process is killed: its lock goes, the file stays
    assert _held_files(rv) == [dead.path]
    source = tmp_path / "in.csv"
    make_churn(30, seed=14).to_csv(source, index=False)
    assert score_file(rv, "churn", source, tmp_path / "out.csv").rows == 30
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert len(stored) == 30 and "dead-row" not in stored
    assert _spool_files(rv) == []  # the dead run's held entries were deleted unread


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_every_task_logs_what_the_output_file_holds(rv, churn_frame, tmp_path, monkeypatch, task):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline

    reference = churn_frame.copy()
    if task == "multiclass":
        reference["plan"] = pd.cut(reference["monthly_charges"], 3, labels=["s", "m", "l"])
        reference["plan"] = reference["plan"].astype(str)
        model = LogisticRegression(max_iter=500)
        target = "plan"
    else:
        reference["spend"] = reference["monthly_charges"] * reference["tenure_months"]
        model = LinearRegression()
        target = "spend"
    numeric = ["age", "tenure_months", "support_calls", "satisfaction"]
    pipeline = make_pipeline(SimpleImputer(), model).fit(reference[numeric], reference[target])
    rv.registry.register("m", pipeline, reference[[*numeric, target]], target=target)
    rv.deployments.deploy("m", "m:1")
    monkeypatch.setattr(rv, "settings", rv.settings.model_copy(update={"log_flush_rows": 7}))
    source = tmp_path / "in.parquet"
    make_churn(45, seed=15)[numeric].to_parquet(source)
    output = tmp_path / "o.parquet"
    assert score_file(rv, "m", source, output, chunk_rows=20).rows == 45  # pieces of 7 rows
    scored = pd.read_parquet(output)
    stored = {
        r["id"]: json.loads(r["output"]) for c in rv.store.predictions.iter_rows("m") for r in c
    }
    assert sorted(stored) == sorted(scored["id"])
    for row in scored.itertuples():
        logged = stored[row.id]
        if task == "regression":
            assert logged["value"] == pytest.approx(row.value)
        else:
            assert logged["label"] == row.label
            assert logged["probabilities"]["m"] == pytest.approx(row.probability_m)


def test_rows_the_store_cannot_take_at_the_end_are_kept_for_the_next_start(
    rv, deployed, tmp_path, monkeypatch
):
    from relevo.serving.log import PredictionLog

    real = PredictionLog._replay

    def store_down(self, payloads):
        raise ConnectionError("the database is down")

    monkeypatch.setattr(PredictionLog, "_replay", store_down)
    source = tmp_path / "in.csv"
    make_churn(80, seed=16).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    with pytest.warns(UserWarning, match="did not take this run's 80 rows yet; they are kept"):
        assert score_file(rv, "churn", source, output, chunk_rows=50).rows == 80
    assert rv.store.predictions.count("churn") == 0
    assert [name.endswith(".spool") for name in _spool_files(rv)] == [True]
    monkeypatch.setattr(PredictionLog, "_replay", real)  # the store is back
    plog = open_prediction_log(rv)
    assert plog is not None
    plog.close()
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(stored) == sorted(pd.read_csv(output)["id"])


def test_a_store_busy_for_a_moment_at_the_end_still_takes_the_runs_rows(
    rv, deployed, tmp_path, monkeypatch
):
    """A store that fails the first write of the run's rows (a SQLite file locked by another
    writer, a dropped connection) is tried again before the run ends: the rows are stored, the
    next command sees them, and nothing is said of rows kept for later."""
    import warnings

    from relevo.serving.log import PredictionLog

    real = PredictionLog._replay
    calls: list[int] = []

    def busy_once(self, payloads):
        calls.append(len(payloads))
        if len(calls) == 1:
            raise ConnectionError("the database is locked")
        return real(self, payloads)

    monkeypatch.setattr(PredictionLog, "_replay", busy_once)
    source = tmp_path / "in.csv"
    make_churn(80, seed=18).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "did not take this run's rows yet"
        assert score_file(rv, "churn", source, output, chunk_rows=50).rows == 80
    assert len(calls) >= 2
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(stored) == sorted(pd.read_csv(output)["id"])
    assert _spool_files(rv) == []


def test_without_flock_a_run_stores_its_rows_itself(rv, deployed, tmp_path, monkeypatch):
    import relevo.serving.spool as spool

    # Windows: no flock, so replays never take a segment; the run queues its own rows
    monkeypatch.setattr(spool, "REPLAYS", False)
    monkeypatch.setattr(spool, "_try_lock", lambda fd: False)
    source = tmp_path / "in.csv"
    make_churn(90, seed=17).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    assert score_file(rv, "churn", source, output, chunk_rows=40).rows == 90
    stored = [r["id"] for chunk in rv.store.predictions.iter_rows("churn") for r in chunk]
    assert sorted(stored) == sorted(pd.read_csv(output)["id"])
    assert _spool_files(rv) == []


def test_an_all_numeric_models_file_is_logged_with_its_number_blocks_and_profiled(
    rv, tmp_path, monkeypatch, appended, numeric_pipeline, churn_frame
):
    """An all-numeric model's chunks reach the log with their number columns as a block
    (in the held segment on disk too): the rows are stored with their features, and the
    profile is the file's values."""
    from datetime import UTC, datetime, timedelta

    from relevo.datasets.churn import CHURN_NUMERIC
    from relevo.monitoring import NumericProfile
    from relevo.monitoring.windows import load_window
    from relevo.serving import batch_log
    from relevo.serving.entries import decode

    reference = churn_frame[[*CHURN_NUMERIC, "churned"]]
    version = rv.registry.register("numeric", numeric_pipeline, reference, target="churned")
    rv.deployments.deploy("numeric", version.ref)
    frame = make_churn(230, seed=42)[CHURN_NUMERIC]
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    held = appended(batch_log.HeldSegment)
    monkeypatch.setattr(rv, "settings", rv.settings.model_copy(update={"log_flush_rows": 40}))
    done = score_file(rv, "numeric", source, tmp_path / "out.csv", chunk_rows=100)
    assert done.rows == 230
    entries = [decode(p) for p in held]
    assert sum(e.n for e in entries) == 230
    assert all(e.numeric == tuple(CHURN_NUMERIC) for e in entries if e.n > 1)
    blocks = np.concatenate([e.numbers for e in entries if e.numbers is not None])
    assert blocks.shape == (230, len(CHURN_NUMERIC))
    np.testing.assert_array_equal(blocks, frame.to_numpy(dtype=np.float64))
    stored = [r for chunk in rv.store.predictions.iter_rows("numeric") for r in chunk]
    assert len(stored) == 230
    by_id = sorted(stored, key=lambda r: r["id"])
    assert json.loads(by_id[7]["features"])["age"] == pytest.approx(frame["age"].iloc[7])
    now = datetime.now(UTC)
    window = load_window(rv.store, "numeric", now - timedelta(hours=1), now + timedelta(hours=1))
    assert window is not None and window.rows == 230
    for name in CHURN_NUMERIC:
        column = window.inputs.columns[name]
        values = frame[name].to_numpy(dtype=float)
        assert isinstance(column, NumericProfile)
        assert column.count == np.isfinite(values).sum()
        assert column.mean == pytest.approx(np.nanmean(values), rel=1e-9)


@pytest.mark.parametrize("chunk_rows", [50, 200])
def test_a_text_cell_left_empty_is_missing_whatever_the_chunk_size(
    rv, deployed, tmp_path, chunk_rows
):
    frame = make_churn(200, seed=3)
    frame.loc[150:, "region"] = None  # the reference had no missing region
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    with pytest.raises(InvalidInputError) as info:  # a chunk of 50 all empty: not "nan"
        score_file(rv, "churn", source, tmp_path / "out.csv", chunk_rows=chunk_rows)
    assert {(p.row, p.column) for p in info.value.problems} >= {(150, "region"), (199, "region")}
    assert not list(rv.store.predictions.iter_rows("churn"))


def _coded(n: int, seed: int) -> pd.DataFrame:
    """Plans coded as text that looks like numbers ("01", "02"...), and an age."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["01", "02", "10", "11"], n)
    y = ((plan == "01") | (plan == "10")).astype(int) ^ (rng.random(n) < 0.1)
    return pd.DataFrame(
        {"plan": pd.array(plan, dtype="str"), "age": rng.integers(18, 80, n), "y": y}
    )


def test_text_codes_that_look_like_numbers_keep_their_text(rv, tmp_path, cli):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = _coded(2000, 1)
    encode = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), ["plan"]), ("n", "passthrough", ["age"])]
    )
    model = Pipeline([("p", encode), ("m", LogisticRegression(max_iter=1000))])
    model.fit(train[["plan", "age"]], train["y"])
    version = rv.registry.register("coded", model, train, target="y")  # plan: string
    rv.deployments.deploy("coded", version.ref)
    frame = _coded(200, 2)[["plan", "age"]]
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    expected = model.predict_proba(frame)[:, 1]

    score_file(rv, "coded", source, tmp_path / "out.csv")
    scored = pd.read_csv(tmp_path / "out.csv", dtype={"plan": str})
    assert scored["plan"].tolist() == frame["plan"].tolist()  # "02", not "2"
    np.testing.assert_allclose(scored["probability"], expected)
    logged = [json.loads(r["features"]) for c in rv.store.predictions.iter_rows("coded") for r in c]
    assert sorted(f["plan"] for f in logged) == sorted(frame["plan"])

    # scored in memory (relevo predict --json) the file reads alike
    shown = cli("predict", "coded", "--input", source, "--json")
    assert shown.exit_code == 0, shown.stderr
    answered = json.loads(shown.stdout)
    assert [r["plan"] for r in answered] == frame["plan"].tolist()
    np.testing.assert_allclose([r["probability"] for r in answered], expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_large_integer_ids_with_a_gap_are_written_and_logged_exactly(
    rv, deployed, tmp_path, suffix
):
    frame = make_churn(100, seed=3)
    frame["customer_id"] = pd.array([10**17 + i for i in range(100)], dtype="Int64")
    frame.loc[10, "customer_id"] = pd.NA
    frame["account"] = frame["customer_id"]  # a column the model does not use
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        frame.to_csv(source, index=False)
    else:  # as a writer without pandas' metadata stores it: int64 with a null
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(), source
        )
    score_file(rv, "churn", source, tmp_path / "out.csv")
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[2].startswith("100000000000000001,")  # not 1e+17
    scored = pd.read_csv(tmp_path / "out.csv", dtype={"account": str})
    assert scored["account"][1] == "100000000000000001"
    keys = [r["routing_key"] for c in rv.store.predictions.iter_rows("churn") for r in c]
    assert sorted(k for k in keys if k is not None) == [
        str(10**17 + i) for i in range(100) if i != 10
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_input_columns_named_id_or_model_are_kept_apart_from_the_added_ones(
    rv, deployed, tmp_path, suffix
):
    frame = make_churn(50, seed=3)
    frame.insert(0, "id", range(50))
    frame["model"] = "the customer's phone"
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / f"out{suffix}"
    score_file(rv, "churn", source, out)
    scored = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    added = ["output_id", "output_model", "probability", "label"]
    assert list(scored.columns) == [*frame.columns, *added]
    assert scored["id"].astype(str).tolist() == [str(i) for i in range(50)]  # the input's
    assert set(scored["output_model"]) == {deployed.ref}
    logged = {r["id"] for c in rv.store.predictions.iter_rows("churn") for r in c}
    assert set(scored["output_id"]) == logged


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_column_empty_in_the_first_chunk_is_written_with_its_later_values(
    rv, deployed, tmp_path, suffix
):
    frame = make_churn(200, seed=3)
    frame["note"] = None  # a column the model does not use, empty but in one row
    frame.loc[150, "note"] = "called twice"
    source = tmp_path / f"in{suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
    done = score_file(rv, "churn", source, tmp_path / "out.parquet", chunk_rows=100)
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert done.rows == len(scored) == 200
    assert scored["note"].fillna("").tolist() == frame["note"].fillna("").tolist()


def test_a_parquet_files_typed_columns_keep_their_types_when_empty_in_the_first_chunk(
    rv, deployed, tmp_path
):
    """A boolean and a date column the model does not use, empty in the whole first chunk: the
    output took the first chunk's (typeless) column as text, and the later chunks' booleans and
    dates failed the run. The input file's own types now decide."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = make_churn(200, seed=3)
    frame["vip"] = pd.array([None] * 100 + [i % 2 == 0 for i in range(100)], dtype=object)
    frame["signup"] = [None] * 100 + [datetime.date(2024, 1, 1 + i % 28) for i in range(100)]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(
        table.schema.get_field_index("vip"), "vip", table["vip"].cast(pa.bool_())
    )
    source = tmp_path / "in.parquet"
    pq.write_table(table, source)
    assert pq.read_schema(source).field("signup").type == pa.date32()

    done = score_file(rv, "churn", source, tmp_path / "out.parquet", chunk_rows=100)
    assert done.rows == 200
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("vip").type == pa.bool_()
    assert out.schema.field("signup").type == pa.date32()
    assert out["vip"].to_pylist() == table["vip"].to_pylist()
    assert out["signup"].to_pylist() == table["signup"].to_pylist()


def test_a_csv_number_column_whole_in_the_first_chunk_and_decimal_later(rv, deployed, tmp_path):
    """A model's number column whose first chunk holds whole numbers only: pandas reads it as
    integers there, and the decimals of a later chunk must still fit the Parquet output."""
    frame = make_churn(200, seed=3)
    charges = frame["monthly_charges"].astype(object)
    charges[:100] = [round(x) for x in charges[:100]]  # written as "50", not "50.0"
    frame["monthly_charges"] = charges
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    assert "." not in source.read_text().splitlines()[1].split(",")[4]
    done = score_file(rv, "churn", source, tmp_path / "out.parquet", chunk_rows=100)
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert done.rows == len(scored) == 200
    expected = frame["monthly_charges"].astype(float)
    np.testing.assert_allclose(scored["monthly_charges"].astype(float), expected)


def test_ctrl_c_while_json_output_is_written_leaves_the_earlier_file_as_it_was(
    cli, rv, deployed, tmp_path, monkeypatch
):
    """`relevo predict --json --output out.csv` writes the file after the run: a Ctrl-C (or a
    full disk) in that write left a cut file in place of any earlier one."""
    source = tmp_path / "in.csv"
    make_churn(200, seed=6).to_csv(source, index=False)
    output = tmp_path / "out.csv"
    output.write_text("earlier,file\n1,2\n")
    real = pd.DataFrame.to_csv

    def cut_short(self, path=None, *args, **kwargs):
        if path is not None and "out.csv" in str(path):
            Path(path).write_text("id,model,prob")  # a few bytes, then Ctrl-C
            raise KeyboardInterrupt
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
    result = cli("predict", "churn", "--input", source, "--json", "--output", output)
    assert result.exit_code == 130
    said = " ".join(result.stderr.split())
    assert f"writing {output} stopped: it was not written (a file already there is as it was)" in (
        said
    )
    assert output.read_text() == "earlier,file\n1,2\n"
    assert not list(tmp_path.glob("*partial*"))  # nothing left beside it
    assert rv.store.predictions.count("churn") == 200  # the run had succeeded: logged once
