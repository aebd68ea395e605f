"""A sample file read exactly as `relevo predict` reads an input file (docs/validate.md).

The columns every version under test reads as numbers are parsed as numbers (decimals as floats
in every chunk); the versions' other columns are kept as the file says them, so a code "02" in a
text column stays "02", not the number 2. Columns outside the signatures (the labels) are read
as pandas guesses them, so labels `1`, `1.0` and `"1"` still name the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from relevo.context import Relevo
from relevo.errors import InvalidInputError
from relevo.serving.batch import float_columns, number_columns  # relevo predict's rule
from relevo.serving.batch_io import iter_chunks


def read_sample(relevo: Relevo, path: Path, refs: Sequence[str]) -> pd.DataFrame:
    """The rows of `path` (.csv, .parquet...) as batch scoring reads them for the versions
    `refs` (the one tested, and the one it is compared with)."""
    signatures = [relevo.registry.get(ref).signature for ref in refs]
    features = {spec.name for signature in signatures for spec in signature.columns}
    numbers = number_columns(signatures, None)
    floats = float_columns(signatures, numbers)
    chunks = list(
        iter_chunks(
            path,
            relevo.settings.batch_chunk_rows,
            text=lambda name: name in features and name not in numbers,
            floats=floats,
        )
    )
    if not chunks or not any(len(c) for c in chunks):
        raise InvalidInputError(f"the sample {path} has no rows")
    return pd.concat(chunks) if len(chunks) > 1 else chunks[0]
