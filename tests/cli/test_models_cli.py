"""`relevo models register|list|show`: what a user sees on stdout, stderr and in exit codes, and
what ends up stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from relevo.cli.main import app
from relevo.datasets import CHURN_FEATURES, CHURN_TARGET
from relevo.errors import IntegrityError


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None, result.output
    assert result.stderr == ""


def assert_fails(result: Result, code: int, *needles: str) -> str:
    """A one-line `Error: ...` on stderr naming every needle, exit `code`, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def register_args(files: Any, *extra: str) -> list[Any]:
    return [
        "models",
        "register",
        "churn",
        files.model,
        "--reference",
        files.reference,
        "--target",
        CHURN_TARGET,
        *extra,
    ]


def register_with(model: Any, reference: Any, name: str = "churn") -> list[Any]:
    return ["models", "register", name, model, "--reference", reference]


@pytest.fixture
def registered(cli, churn_files) -> Result:
    result = cli(*register_args(churn_files, "--tag", "team=growth"))
    assert_ok(result)
    return result


# --------------------------------------------------------------------------- register


def test_register_prints_the_ref_and_stores_the_version(cli, rv, churn_files, registered):
    assert registered.stdout.startswith("Registered churn:1 (sklearn, binary)")
    assert "9 input columns" in registered.stdout

    version = rv.registry.get("churn:1")
    assert version.tags == {"team": "growth"}
    assert version.target == CHURN_TARGET
    assert version.signature.names == CHURN_FEATURES
    assert version.artifact_sha256[:12] in registered.stdout

    again = cli(*register_args(churn_files))
    assert_ok(again)
    assert again.stdout.startswith("Registered churn:2 ")
    assert [v.ref for v in rv.registry.list()] == ["churn:1", "churn:2"]


def test_register_json(cli, rv, churn_files):
    result = cli(*register_args(churn_files, "--metric", "auc=0.83", "-d", "first try", "--json"))
    assert_ok(result)
    data = json.loads(result.stdout)
    assert (data["name"], data["version"], data["ref"]) == ("churn", 1, "churn:1")
    assert (data["flavor"], data["task"], data["classes"]) == ("sklearn", "binary", [0, 1])
    assert [c["name"] for c in data["signature"]["columns"]] == CHURN_FEATURES
    assert data["metrics"] == {"auc": 0.83}
    assert data["description"] == "first try"
    assert data["artifact"]["sha256"] == rv.registry.get("churn:1").artifact_sha256


def test_register_with_an_explicit_flavor(cli, rv, churn_files):
    # a pickle under a name detection does not know
    renamed = churn_files.model.with_name("model.bin")
    renamed.write_bytes(churn_files.model.read_bytes())
    args = ["models", "register", "churn", renamed, "--reference", churn_files.reference]
    assert_ok(cli(*args, "--flavor", "sklearn", "--target", CHURN_TARGET))
    assert rv.registry.get("churn:1").flavor == "sklearn"


# --------------------------------------------------------------------------- list


def test_list_is_a_table(cli, registered, rv):
    result = cli("models", "list")
    assert_ok(result)
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "model" in line and "kind" in line)
    assert all(c in header for c in ("inputs", "created", "sha256", "tags"))
    row = next(line for line in lines if "churn:1" in line)
    sha = rv.registry.get("churn:1").artifact_sha256[:12]
    for cell in ("sklearn", "binary", " 9 ", sha, "team=growth"):
        assert cell in row


def test_list_when_nothing_is_registered(cli):
    result = cli("models", "list")
    assert_ok(result)
    assert "No model is registered yet" in result.stdout
    empty = cli("models", "list", "--json")
    assert_ok(empty)
    assert json.loads(empty.stdout) == []


def test_list_of_a_name_no_model_has_names_the_models_there_are(cli, registered):
    """It said "No model is registered yet" while churn was."""
    result = cli("models", "list", "nope")
    assert_ok(result)
    assert "No version of model 'nope' is registered; the registered models: churn" in (
        " ".join(result.stdout.split())
    )


def test_list_json(cli, churn_files, registered):
    assert_ok(cli(*register_args(churn_files)))
    result = cli("models", "list", "--json")
    assert_ok(result)
    data = json.loads(result.stdout)
    assert [(v["name"], v["version"]) for v in data] == [("churn", 1), ("churn", 2)]
    assert {v["flavor"] for v in data} == {"sklearn"}
    for version in data:
        assert [c["name"] for c in version["signature"]["columns"]] == CHURN_FEATURES
    assert data[0]["tags"] == {"team": "growth"}
    assert data[1]["tags"] == {}


# --------------------------------------------------------------------------- show


def test_show_prints_signature_and_reference_profile(cli, registered, rv):
    result = cli("models", "show", "churn:1")
    assert_ok(result)
    out = result.stdout
    assert "Model churn:1" in out
    assert rv.registry.get("churn:1").artifact_sha256 in out
    assert "team=growth" in out
    signature, _, profile = out.partition("Reference profile")
    assert "Input signature" in signature
    assert profile, "no reference profile section"
    for column in CHURN_FEATURES:
        assert column in signature.partition("Input signature")[2]
        assert column in profile
    assert "prediction" in profile
    satisfaction = next(line for line in signature.splitlines() if "satisfaction" in line)
    assert "number" in satisfaction and "yes" in satisfaction  # nullable
    contract = next(line for line in signature.splitlines() if "contract" in line)
    assert "month-to-month, one-year, two-year" in contract


def test_show_json_includes_the_reference_profile(cli, registered, churn_frame):
    result = cli("models", "show", "churn:1", "--json")
    assert_ok(result)
    data = json.loads(result.stdout)
    assert data["ref"] == "churn:1"
    assert [c["name"] for c in data["signature"]["columns"]] == CHURN_FEATURES
    rows = {row["column"]: row for row in data["reference_profile"]}
    assert list(rows) == [*CHURN_FEATURES, "prediction"]
    assert rows["age"]["mean"] == pytest.approx(churn_frame["age"].mean())
    assert rows["satisfaction"]["missing_share"] == pytest.approx(
        churn_frame["satisfaction"].isna().mean()
    )
    assert rows["satisfaction"]["count"] == churn_frame["satisfaction"].notna().sum()
    top = rows["contract"]["top"][0]
    shares = churn_frame["contract"].value_counts(normalize=True)
    assert (top["value"], top["share"]) == (shares.index[0], pytest.approx(shares.iloc[0]))


def test_show_without_a_version_is_the_latest(cli, churn_files, registered):
    assert_ok(cli(*register_args(churn_files)))
    result = cli("models", "show", "churn", "--json")
    assert_ok(result)
    assert json.loads(result.stdout)["ref"] == "churn:2"


def test_show_works_but_loading_is_refused_after_tampering(cli, registered, rv, relevo_home):
    version = rv.registry.get("churn:1")
    with (relevo_home / "artifacts" / version.artifact_path).open("ab") as fh:
        fh.write(b"\0")

    result = cli("models", "show", "churn:1", "--json")
    assert_ok(result)
    assert json.loads(result.stdout)["artifact"]["sha256"] == version.artifact_sha256
    with pytest.raises(IntegrityError, match="changed"):
        rv.registry.load("churn:1")


def test_user_text_is_printed_literally_not_as_markup(cli, churn_files, churn_frame, tmp_path):
    # Rich would read "[/x]" as a closing tag (and crash) and "[bold]" as a style (and hide it)
    reference = tmp_path / "bracketed.csv"
    churn_frame.assign(region=churn_frame["region"].replace("west", "[/west]")).to_csv(
        reference, index=False
    )
    result = cli(
        *register_with(churn_files.model, reference),
        *("--tag", "note=[/x] [bold]y", "-d", "[red]hot[/red]"),
    )
    assert_ok(result)

    listed = cli("models", "list")
    assert_ok(listed)
    assert "note=[/x] [bold]y" in listed.stdout
    shown = cli("models", "show", "churn:1")
    assert_ok(shown)
    assert "[red]hot[/red]" in shown.stdout
    assert "[/west]" in shown.stdout
    assert_fails(cli("models", "show", "[/x]:1"), 3, "model [/x]:1 not found")


# --------------------------------------------------------------------------- errors


ArgsFor = Callable[[Any, Any], list[Any]]


REGISTER_ERRORS: list[tuple[str, ArgsFor, tuple[str, ...]]] = [
    (
        "unreadable-artifact",
        lambda ok, bad: register_with(bad.text_model, ok.reference),
        ("cannot load model.joblib",),
    ),
    (
        "unknown-artifact-type",
        lambda ok, bad: register_with(ok.reference, ok.reference),
        ("cannot tell the flavor of", "churn.csv", "--flavor"),
    ),
    (
        "reference-lacks-a-column",
        lambda ok, bad: register_with(ok.model, bad.no_tenure),
        ("tenure_months",),
    ),
    (
        "target-absent",
        lambda ok, bad: [*register_args(ok)[:-1], "satisfied"],
        ("target column 'satisfied'",),
    ),
    (
        "empty-reference",
        lambda ok, bad: register_with(ok.model, bad.header_only),
        ("reference data is empty",),
    ),
    (
        "reference-not-found",
        lambda ok, bad: register_with(ok.model, "nowhere.csv"),
        ("reference not found", "nowhere.csv"),
    ),
    (
        "invalid-name",
        lambda ok, bad: register_with(ok.model, ok.reference, name="churn model"),
        ("invalid model name 'churn model'",),
    ),
    (
        "tag-without-equals",
        lambda ok, bad: register_args(ok, "--tag", "team"),
        ("--tag expects KEY=VALUE", "'team'"),
    ),
    (
        "metric-not-a-number",
        lambda ok, bad: register_args(ok, "--metric", "auc=high"),
        ("--metric values must be numbers", "auc"),
    ),
    (
        "unknown-flavor",
        lambda ok, bad: register_args(ok, "--flavor", "pytorch"),
        ("unknown flavor 'pytorch'", "sklearn"),
    ),
]


@pytest.mark.parametrize(
    ("make_args", "needles"),
    [pytest.param(args, needles, id=case) for case, args, needles in REGISTER_ERRORS],
)
def test_register_errors(cli, churn_files, broken_files, make_args, needles):
    assert_fails(cli(*make_args(churn_files, broken_files)), 2, *needles)
    # nothing was stored
    listed = cli("models", "list", "--json")
    assert_ok(listed)
    assert json.loads(listed.stdout) == []


SHOW_ERRORS = [
    ("churn:7", 3, ("model churn:7 not found", "registered models: churn")),
    ("other:1", 3, ("model other:1 not found",)),
    ("churn:x", 2, ("'churn:x'", "whole number")),
    ("churn:0", 2, ("versions start at 1",)),
    (":1", 2, ("expected NAME:VERSION",)),
]


def test_show_errors(cli, registered):
    for ref, code, needles in SHOW_ERRORS:
        assert_fails(cli("models", "show", ref), code, *needles)
        assert_fails(cli("models", "show", ref, "--json"), code, *needles)


def test_unreachable_database(tmp_path):
    # not through the `cli` fixture: its --database-url is a reachable store
    url = "postgresql://nobody@127.0.0.1:1/x"
    result = CliRunner().invoke(
        app, ["--home", str(tmp_path / "home"), "--database-url", url, "models", "list"]
    )
    assert_fails(result, 6, "cannot reach the database", "127.0.0.1:1")


# ------------------------------------------- models fitted on arrays, input format, trust


@pytest.fixture
def numpy_files(tmp_path, churn_frame) -> Any:
    """A pipeline fitted on the numeric churn columns as a NumPy array (no feature names), and
    two references: training column order, and reversed, each with the customer id."""
    import joblib
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from relevo.datasets import CHURN_ID, CHURN_NUMERIC

    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(churn_frame[CHURN_NUMERIC].to_numpy(), churn_frame[CHURN_TARGET])
    folder = tmp_path / "numpy"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    columns = [CHURN_ID, *CHURN_NUMERIC, CHURN_TARGET]
    churn_frame[columns].to_csv(folder / "train.csv", index=False)
    churn_frame[columns[::-1]].to_csv(folder / "reversed.csv", index=False)
    return folder


def test_numpy_model_says_which_order_it_took(cli, rv, numpy_files):
    """The issue's scenario through the CLI: reversed columns are said, not silently used."""
    base = ["models", "register", "m", numpy_files / "model.joblib", "--target", CHURN_TARGET]
    # the id makes six candidate columns for five inputs: refused, with both counts
    assert_fails(
        cli(*base, "--reference", numpy_files / "train.csv"),
        2,
        "takes 5 inputs",
        "6 candidate columns",
        "--features",
        "--exclude",
    )
    reversed_run = cli(
        *base, "--reference", numpy_files / "reversed.csv", "--exclude", "customer_id"
    )
    assert_ok(reversed_run)
    assert "Input order:" in reversed_run.stdout
    assert "satisfaction, support_calls, monthly_charges, tenure_months, age" in reversed_run.stdout
    assert "--features" in reversed_run.stdout
    named = cli(
        *base,
        "--reference",
        numpy_files / "reversed.csv",
        "--features",
        "age,tenure_months,monthly_charges,support_calls,satisfaction",
    )
    assert_ok(named)
    assert "Input order:" not in named.stdout
    assert "fed as a float64 array" in named.stdout
    assert rv.registry.get("m:2").signature.names == [
        "age",
        "tenure_months",
        "monthly_charges",
        "support_calls",
        "satisfaction",
    ]
    shown = cli("models", "show", "m:2")
    assert_ok(shown)
    assert "float64 array" in shown.stdout and "--features" in shown.stdout
    data = json.loads(cli("models", "show", "m:2", "--json").stdout)
    assert data["flavor_options"]["input"] == "array"
    assert data["flavor_options"]["input_order"] == "operator"


def test_register_json_keeps_the_order_note_off_stdout(cli, numpy_files):
    result = cli(
        "models",
        "register",
        "m",
        numpy_files / "model.joblib",
        "--reference",
        numpy_files / "reversed.csv",
        "--target",
        CHURN_TARGET,
        "--exclude",
        "customer_id",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flavor_options"]["input_order"] == "reference"
    assert "Input order:" in result.stderr


def test_id_column_in_a_numeric_model_is_named(cli, numpy_files, churn_frame, tmp_path):
    from relevo.datasets import CHURN_ID, CHURN_NUMERIC

    reference = tmp_path / "with_id.csv"
    churn_frame[[CHURN_ID, *CHURN_NUMERIC[1:], CHURN_TARGET]].to_csv(reference, index=False)
    result = cli(
        *register_with(numpy_files / "model.joblib", reference, "m"), "--target", CHURN_TARGET
    )
    line = assert_fails(result, 2, "customer_id", "--exclude customer_id", "--features")
    assert "Traceback" not in line


def test_churn_pipeline_is_fed_a_frame(cli, registered):
    assert "fed as a DataFrame" in registered.stdout
    shown = cli("models", "show", "churn:1")
    assert_ok(shown)
    assert "DataFrame (decided by rehearsal)" in shown.stdout


def test_skops_trust_through_the_cli(cli, rv, tmp_path, churn_frame):
    sio = pytest.importorskip("skops.io")
    from pathlib import Path as _Path

    from sklearn.linear_model import Ridge

    from relevo.datasets import CHURN_NUMERIC

    x = churn_frame[CHURN_NUMERIC].fillna(0)
    reg = Ridge().fit(x, churn_frame[CHURN_TARGET])
    reg.note_ = _Path("notes.txt")  # a type skops does not trust by default
    model = tmp_path / "model.skops"
    sio.dump(reg, model)
    needed = sorted(sio.get_untrusted_types(file=model))
    reference = tmp_path / "ref.csv"
    x.assign(**{CHURN_TARGET: churn_frame[CHURN_TARGET]}).to_csv(reference, index=False)
    args = [*register_with(model, reference, "r"), "--target", CHURN_TARGET]
    assert_fails(cli(*args), 2, *needed, "--trust", "nothing was loaded")
    assert rv.registry.list() == []
    trusted = [arg for name in needed for arg in ("--trust", name)]
    assert_ok(cli(*args, *trusted))
    shown = cli("models", "show", "r:1")
    assert_ok(shown)
    assert "trusted types" in shown.stdout
    assert rv.registry.get("r:1").flavor_options["trusted_types"] == needed


def test_pickle_needing_a_main_class(cli, tmp_path):
    import subprocess
    import sys
    import textwrap

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.py").write_text(
        textwrap.dedent(
            """
            import joblib
            from sklearn.base import BaseEstimator, RegressorMixin

            class MainWrapper(RegressorMixin, BaseEstimator):
                def fit(self, x, y):
                    return self
                def predict(self, x):
                    return [0.0] * len(x)

            joblib.dump(MainWrapper().fit([[1.0]], [2.0]), "model.joblib")
            """
        )
    )
    subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, capture_output=True)
    reference = tmp_path / "ref.csv"
    reference.write_text("x,y\n1.0,2.0\n")
    result = cli(*register_with(folder / "model.joblib", reference, "w"), "--target", "y")
    assert_fails(result, 2, "'MainWrapper'", "__main__", "importable module", "PYTHONPATH")


def test_text_in_a_numeric_reference_column_is_named_by_row_and_column(
    cli, churn_files, churn_frame, tmp_path
):
    """`x` in the reference's `age` column (a model input): the cell is named as `relevo
    predict` names it, not scikit-learn's "Cannot use mean strategy" with advice to exclude a
    real input; nothing is registered."""
    typo = tmp_path / "ref.csv"
    churn_frame.astype({"age": object}).assign(
        age=lambda f: f["age"].where(f.index != 2, "x")
    ).to_csv(typo, index=False)

    # what `relevo predict` says of the same file, for a model registered on a clean one
    assert_ok(cli(*register_args(churn_files)))
    assert_ok(cli("deploy", "churn", "churn:1"))
    predicted = cli("predict", "churn", "--input", typo, "--output", tmp_path / "out.csv")
    assert predicted.exit_code == 2
    cell = "row 2, column 'age': cannot parse 'x' as an integer"
    assert cell in predicted.stderr

    result = cli(*register_with(churn_files.model, typo), "--target", CHURN_TARGET)
    line = assert_fails(result, 2, cell, "column(s) of numbers ('age')", "nothing was registered")
    assert "mean strategy" not in line and "--exclude" not in line
    assert [v["ref"] for v in json.loads(cli("models", "list", "--json").stdout)] == ["churn:1"]


def test_show_of_a_one_row_reference_says_it_has_no_spread(cli, churn_files, churn_frame, tmp_path):
    """A one-row reference has no standard deviation: `models show` printed "std ," (blank)."""
    one = tmp_path / "one.csv"
    churn_frame.head(1).to_csv(one, index=False)
    registered = cli(
        "models", "register", "churn", churn_files.model, "--reference", one, "--target", "churned"
    )
    assert_ok(registered)
    shown = cli("models", "show", "churn:1")
    assert_ok(shown)
    assert "std -," in shown.stdout and "std ," not in shown.stdout
