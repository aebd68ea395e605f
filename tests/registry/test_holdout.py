"""Registration warns when the reference is the data the model was trained on (Python warning
and `relevo models register` output), and not when it is a held-out split."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from relevo.datasets import make_churn
from relevo.registry.holdout import ReferenceIsTrainingDataWarning, training_share


def test_the_same_frame_as_reference_and_training_warns(rv, churn_pipeline, churn_frame):
    with pytest.warns(ReferenceIsTrainingDataWarning, match="held-out split"):
        rv.registry.register(
            "churn", churn_pipeline, churn_frame, target="churned", training=churn_frame
        )


def test_a_copy_of_the_training_rows_warns_and_a_held_out_split_does_not(
    rv, churn_pipeline, churn_frame, tmp_path
):
    training = tmp_path / "train.csv"
    churn_frame.to_csv(training, index=False)
    shuffled = churn_frame.sample(frac=0.6, random_state=3).reset_index(drop=True)
    with pytest.warns(ReferenceIsTrainingDataWarning, match="100% of the reference rows"):
        rv.registry.register("churn", churn_pipeline, shuffled, target="churned", training=training)
    held_out = make_churn(1000, seed=77)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceIsTrainingDataWarning)
        rv.registry.register(
            "churn", churn_pipeline, held_out, target="churned", training=churn_frame
        )


def test_training_share_counts_rows_found_in_the_training_data(churn_frame):
    columns = ["age", "tenure_months", "contract", "monthly_charges"]
    other = make_churn(300, seed=99)
    mixed = pd.concat([churn_frame.head(100), other], ignore_index=True)
    expected = (
        mixed[columns]
        .astype(str)
        .apply(tuple, axis=1)
        .isin(set(churn_frame[columns].astype(str).apply(tuple, axis=1)))
        .mean()
    )
    assert training_share(mixed, churn_frame, columns) == pytest.approx(expected)


def test_register_cli_says_the_reference_is_the_training_data(cli, churn_files):
    result = cli(
        "models", "register", "churn", churn_files.model, "--reference", churn_files.reference,
        "--target", "churned", "--training", churn_files.reference,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Reference:" in result.output
    assert "held-out split" in result.output
    quiet = cli(
        "models", "register", "churn", churn_files.model, "--reference", churn_files.reference,
        "--target", "churned",
    )  # fmt: skip
    assert quiet.exit_code == 0 and "Reference:" not in quiet.output
