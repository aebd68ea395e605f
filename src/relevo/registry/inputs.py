"""What a model takes: which reference columns are its inputs, in which order, and how it is fed.

`resolve_features` never guesses an input order silently: a model that names its inputs is
taken at its word (and `features=` must agree); one that does not is given the operator's
`features=`, or the reference's columns when their count matches the model's, with a
`FeatureOrderWarning` saying so.

`rehearse` runs the model on the reference in each way it can be fed (a float64 array, the
frame's values, a DataFrame with names) and keeps the fastest that answers exactly like the
DataFrame without a warning; that choice is recorded with the version.

`stray_text` looks first for columns of numbers that a few text cells turned into text (`x` in
a column of ages): when the model then fails on the reference, those cells are named by row
and column, as `relevo predict` names them, rather than the model's own error; when the model
takes the column as text, a `StrayTextWarning` says it was registered as text because of them.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from relevo.errors import InvalidInputError, Problem
from relevo.registry.flavors import LoadedModel, RawOutput
from relevo.registry.signature import Signature
from relevo.serving.coercion import MAX_PER_COLUMN, NOT_ACCEPTED, parse_text

#: signature kinds that travel as float64 in an "array" input
NUMERIC_KINDS = frozenset({"number", "integer"})
#: a text column is numbers with stray text when at least this share of its cells are numbers
STRAY_SHARE = 0.95


class FeatureOrderWarning(UserWarning):
    """A model without feature names took its input order from the reference's columns."""


class StrayTextWarning(UserWarning):
    """A reference column of numbers was registered as text because a few cells are not."""


def stray_text(frame: pd.DataFrame) -> list[Problem]:
    """The cells that make a column of numbers text (at least `STRAY_SHARE` of its non-missing
    cells numbers, the rest not), by row (counted from 0, as `relevo predict` counts) and
    column, at most `MAX_PER_COLUMN` a column."""
    problems: list[Problem] = []
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
            continue
        # each distinct value once: a column of categories holds few
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        allowed = (1 - STRAY_SHARE) * counts.sum()  # text cells a column of numbers may hold
        numbers: list[float] = []
        bad: list[int] = []  # codes of the text values
        stray = 0
        for code, v in enumerate(uniques.tolist()):
            if isinstance(v, str):
                parsed = parse_text(v, "number")
                if parsed is NOT_ACCEPTED:
                    bad.append(code)
                    stray += int(counts[code])
                    if stray > allowed:
                        break  # text, not numbers
                elif parsed is not None:
                    numbers.append(parsed)
            elif isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_):
                numbers.append(float(v))
            else:  # a boolean, bytes, an object: not a column of numbers
                break
        else:
            if not bad or not numbers:
                continue
            kind = "an integer" if all(float(x).is_integer() for x in numbers) else "a number"
            rows = np.flatnonzero(np.isin(codes, bad))[:MAX_PER_COLUMN].tolist()
            problems += [
                Problem(f"cannot parse {str(uniques[codes[i]])[:40]!r} as {kind}", i, str(name))
                for i in rows
            ]
    return problems


def is_numeric(signature: Signature) -> bool:
    return all(c.kind in NUMERIC_KINDS for c in signature.columns)


def _names(values: Sequence[str] | None, option: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = values.split(",")
    out = [str(v).strip() for v in values if str(v).strip()]
    dup = sorted({v for v in out if out.count(v) > 1})
    if dup:
        raise InvalidInputError(f"{option} names {', '.join(dup)} more than once")
    return out


def _require_columns(frame: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{what} {len(missing)} column(s) the reference data does not have: "
            f"{', '.join(missing)} (its columns: {', '.join(map(str, frame.columns))})",
            [Problem("missing from the reference data", column=c) for c in missing],
        )


def resolve_features(
    model: LoadedModel,
    frame: pd.DataFrame,
    target: str | None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> tuple[list[str], str]:
    """The model's input columns in order, and where that order came from
    ("model", "operator" or "reference")."""
    chosen = _names(features, "--features")
    dropped = _names(exclude, "--exclude") or []
    _require_columns(frame, dropped, "--exclude names")
    if chosen is not None:
        if not chosen:
            raise InvalidInputError("--features is empty: name the model's inputs, in order")
        both = [c for c in chosen if c in dropped or c == target]
        if both:
            raise InvalidInputError(
                f"{', '.join(both)} cannot be both an input (--features) and excluded or the target"
            )
        _require_columns(frame, chosen, "--features names")
    declared = model.feature_names
    if declared is not None:
        if chosen is not None and chosen != declared:
            raise InvalidInputError(
                f"--features ({', '.join(chosen)}) does not match the model's own feature names, "
                f"in its order: {', '.join(declared)}; leave --features out or give exactly those"
            )
        names = _as_the_reference_names(frame, declared)
        _require_columns(frame, names, "the model needs")
        clash = [c for c in names if c in dropped]
        if clash:
            raise InvalidInputError(
                f"--exclude drops {', '.join(clash)}, which the model declares as input(s)"
            )
        return names, "model"
    wanted = model.n_features
    if chosen is not None:
        if wanted is not None and len(chosen) != wanted:
            raise InvalidInputError(
                f"--features names {len(chosen)} column(s) but the model takes {wanted} inputs"
            )
        return chosen, "operator"
    candidates = [str(c) for c in frame.columns if c != target and c not in dropped]
    if wanted is not None and len(candidates) != wanted:
        but = "all but the target and --exclude" if dropped or target else "all columns"
        raise InvalidInputError(
            f"the model has no feature names and takes {wanted} inputs, but the reference data "
            f"has {len(candidates)} candidate columns ({but}): {', '.join(candidates)}. Name "
            "the inputs in the order the model expects with --features a,b,c (Python: "
            "features=[...]), or drop the others (ids, timestamps) with --exclude"
        )
    warnings.warn(
        f"the model has no feature names, so its {len(candidates)} inputs were taken in the "
        f"reference file's column order: {', '.join(candidates)}. If the model expects another "
        "order, register with --features NAME,NAME,... in that order (Python: features=[...])",
        FeatureOrderWarning,
        stacklevel=3,
    )
    return candidates, "reference"


def _as_the_reference_names(frame: pd.DataFrame, declared: Sequence[str]) -> list[str]:
    """The model's declared inputs as the reference names them: a converter rewrote `mean
    radius` to `mean_radius` in LightGBM's and skl2onnx's files, and the flavor's predict maps
    the user's names back (`select_features`); a name matched no other way stays as declared
    (and is then reported missing)."""
    from relevo.registry.flavors.base import _normal_name

    columns = [str(c) for c in frame.columns]
    exact = set(columns)
    by_normal: dict[str, list[str]] = {}
    for col in columns:
        by_normal.setdefault(_normal_name(col), []).append(col)
    out = []
    for name in declared:
        found = by_normal.get(_normal_name(name), [])
        out.append(name if name in exact or len(found) != 1 else found[0])
    return out


@dataclass(frozen=True)
class _Attempt:
    output: RawOutput | None
    error: Exception | None
    warned: list[str]

    @property
    def clean(self) -> bool:
        return self.error is None and not self.warned


def _attempt(call: Callable[[], RawOutput]) -> _Attempt:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
        except Exception as exc:
            return _Attempt(None, exc, [str(w.message) for w in caught])
    return _Attempt(out, None, [str(w.message) for w in caught])


def _same(a: RawOutput, b: RawOutput) -> bool:
    for x, y in ((a.probabilities, b.probabilities), (a.values, b.values)):
        if (x is None) != (y is None):
            return False
        if x is not None and y is not None:
            xa, ya = np.asarray(x), np.asarray(y)
            if xa.shape != ya.shape or not np.array_equal(xa, ya, equal_nan=True):
                return False
    return True


def as_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The frame as serving builds it: a C-ordered float64 matrix, NaN for missing values."""
    return np.ascontiguousarray(frame.to_numpy(dtype=np.float64, na_value=np.nan))


def rehearse(model: LoadedModel, inputs: pd.DataFrame, numeric: bool) -> tuple[RawOutput, str]:
    """Feed the reference rows every way the model can take them; switch it to the fastest
    that answers exactly like the DataFrame without a warning; return its output and mode."""
    modes = [m for m in model.input_modes() if m != "array" or numeric]
    attempts: dict[str, _Attempt] = {}
    # the DataFrame with names first: its answer is what the faster ways must match
    for mode in sorted(modes, key=lambda m: m != "frame"):
        model.set_input_mode(mode)
        if mode == "array":
            attempts[mode] = _attempt(functools.partial(model.predict_array, as_matrix(inputs)))
        else:
            attempts[mode] = _attempt(functools.partial(model.predict, inputs))
    worked = [m for m in modes if attempts[m].error is None]
    if not worked:
        # a model fitted on an array says it best when fed one; a named model, with names
        first = attempts["frame"] if model.feature_names is not None else attempts[modes[0]]
        assert first.error is not None
        raise predict_failure(first.error, inputs, model) from first.error
    truth = attempts["frame"] if "frame" in worked else attempts[worked[0]]
    assert truth.output is not None
    chosen = next(
        (m for m in worked if attempts[m].clean and _same(attempts[m].output, truth.output)),  # type: ignore[arg-type]
        "frame" if "frame" in worked else worked[0],
    )
    model.set_input_mode(chosen)
    output = attempts[chosen].output
    assert output is not None
    return output, chosen


_NOT_A_FLOAT = re.compile(r"could not convert string to float: '([^']*)'")


def predict_failure(exc: Exception, inputs: pd.DataFrame, model: LoadedModel) -> InvalidInputError:
    """The model failed on the reference: say so, and name the text columns when they are the
    likely cause (an id or a timestamp given to a model that takes numbers)."""
    lines = str(exc).strip().splitlines()
    message = f"the model failed to predict on the reference data: {lines[0] if lines else exc}"
    text = [
        str(c)
        for c in inputs.columns
        if not pd.api.types.is_numeric_dtype(inputs[c])
        and not pd.api.types.is_bool_dtype(inputs[c])
    ]
    found = _NOT_A_FLOAT.search(str(exc))
    if not text or (found is None and model.feature_names is not None):
        return InvalidInputError(message)
    if found is not None:
        culprits = [c for c in text if (inputs[c].astype(str) == found.group(1)).any()]
        text = culprits or text
    return InvalidInputError(
        f"{message}. The column(s) {', '.join(text)} hold text, which this model cannot take "
        f"as input: if they are not model inputs (ids, timestamps), leave them out with "
        f"--exclude {','.join(text)} (Python: exclude=[...]), or name the inputs in order "
        "with --features (Python: features=[...])",
        [Problem("text in a column the model reads as numbers", column=c) for c in text],
    )
