"""`BucketProfile`: what one replica saw of one deployment's model, in one time bucket.

Production rows are profiled per (deployment, model version, role, bucket of
`RELEVO_PROFILE_BUCKET_S` seconds) ON THE MODEL VERSION'S REFERENCE BINS AND CATEGORIES: the
inputs, the prediction (P(positive), the regression value or the predicted label), the
reconstruction error of the reference's PCA (multivariate drift) and the data-quality counts.
Values of a categorical column the reference never showed are counted as "__other__" in the
inputs' profile and by name in `quality.unseen`. A bucket is an immutable value; `merge` gives
the profile of both buckets' rows (the same whatever the order), `to_dict` a compact JSON form
(see `relevo.monitoring.layout`) that `from_dict` reads back given the model's reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from relevo.monitoring.layout import ERROR, Layout, PartLayout
from relevo.monitoring.numeric import NumericProfile
from relevo.monitoring.profile import (
    OTHER_CATEGORY,
    CategoricalProfile,
    ColumnProfile,
    DatasetProfile,
    _count_categories,
)
from relevo.monitoring.quality import QualityProfile, Unseen
from relevo.monitoring.reference import PREDICTION, ReferenceProfile

#: raw values a bucket keeps per numeric column (a window draws its sample from these)
BUCKET_SAMPLE = 32
FORMAT = 1
ROLES = ("champion", "challenger", "fallback", "shadow")


def bucket_start(when: datetime, seconds: int) -> datetime:
    """The start of the bucket of `seconds` holding `when` (aligned on the Unix epoch, UTC)."""
    ts = int(when.timestamp() // seconds * seconds)
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class BucketProfile:
    deployment: str
    model_name: str
    model_version: int
    role: str
    #: UTC, aligned to `seconds`
    start: datetime
    seconds: int
    rows: int
    inputs: DatasetProfile
    #: one column, "prediction"
    prediction: DatasetProfile
    quality: QualityProfile
    #: the rows' reconstruction error (None when the reference has no multivariate model)
    multivariate: NumericProfile | None
    #: seeds the numeric columns' sample draws (one per replica and bucket)
    seed: int = 0
    layout: Layout = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    @classmethod
    def empty(
        cls,
        reference: ReferenceProfile,
        deployment: str,
        model_name: str,
        model_version: int,
        role: str,
        start: datetime,
        seconds: int,
        seed: int = 0,
    ) -> BucketProfile:
        layout = reference.layout
        mv = None
        if layout.multivariate is not None:
            col = layout.multivariate.empty(BUCKET_SAMPLE, seed).columns[ERROR]
            assert isinstance(col, NumericProfile)
            mv = col
        return cls(
            deployment,
            model_name,
            model_version,
            role,
            bucket_start(start, seconds),
            seconds,
            0,
            layout.inputs.empty(BUCKET_SAMPLE, seed),
            layout.prediction.empty(BUCKET_SAMPLE, seed),
            QualityProfile(),
            mv,
            seed,
            layout,
        )

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)

    @property
    def key(self) -> tuple[str, str, int, str, datetime]:
        return (self.deployment, self.model_name, self.model_version, self.role, self.start)

    # ---- update

    def update(
        self,
        frame: pd.DataFrame | Mapping[str, Any],
        prediction: Any,
        reference: ReferenceProfile,
        *,
        inputs: bool = True,
    ) -> BucketProfile:
        """A new bucket with the rows of `frame` (a DataFrame, or a mapping of column name to
        equally long arrays: the model's input columns; others are ignored) and their
        predictions (one value per row) added. `inputs=False` profiles the
        predictions only (a shadow model's rows: their inputs are the champion's)."""
        n = _rows(frame) if inputs else len(prediction)
        unseen: dict[str, Unseen] = {}
        new_inputs = self.inputs
        mv = self.multivariate
        if inputs:
            new_inputs = _update_part(self.layout.inputs, self.inputs, frame, unseen)
            if mv is not None and reference.multivariate is not None:
                mv = shuffled(mv.update(reference.multivariate.errors(frame)))
        pred = pd.Series(prediction)
        nan = 0
        if pred.dtype.kind == "f":
            nan = int(np.count_nonzero(~np.isfinite(pred.to_numpy())))
        new_prediction = _update_part(
            self.layout.prediction, self.prediction, {PREDICTION: pred}, None
        )
        quality = self.quality
        if unseen or nan:
            quality = quality.merge(QualityProfile(unseen=unseen, nan_outputs=nan))
        return replace(
            self,
            rows=self.rows + n,
            inputs=new_inputs,
            prediction=new_prediction,
            quality=quality,
            multivariate=mv,
        )

    def with_quality(self, quality: QualityProfile) -> BucketProfile:
        """This bucket with more quality counts (rejected or failed rows: no profile rows)."""
        return replace(self, quality=self.quality.merge(quality))

    def merge(self, other: BucketProfile) -> BucketProfile:
        """Both buckets' rows: the same bucket key and layout (any replicas)."""
        from relevo.monitoring.windows import merge_buckets

        if other.key != self.key or other.seconds != self.seconds:
            raise ValueError("only buckets of the same deployment, model, role and start merge")
        return merge_buckets([self, other])

    # ---- serialisation

    def to_dict(self) -> dict[str, Any]:
        layout = self.layout
        mv = None
        if self.multivariate is not None and layout.multivariate is not None:
            mv = layout.multivariate.encode(
                DatasetProfile(self.multivariate.count + self.multivariate.missing,
                               {ERROR: self.multivariate}),
                BUCKET_SAMPLE,
                self.seed,
            )  # fmt: skip
        return {
            "v": FORMAT,
            "deployment": self.deployment,
            "model": self.model_name,
            "version": self.model_version,
            "role": self.role,
            "start": self.start.isoformat(),
            "seconds": self.seconds,
            "rows": self.rows,
            "seed": self.seed,
            "layout": layout.digest,
            "inputs": layout.inputs.encode(self.inputs, BUCKET_SAMPLE, self.seed),
            "prediction": layout.prediction.encode(self.prediction, BUCKET_SAMPLE, self.seed),
            "multivariate": mv,
            "quality": self.quality.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], reference: ReferenceProfile | Layout) -> BucketProfile:
        """A bucket from `to_dict` data and its model version's reference profile (or the
        layout of that reference)."""
        layout = reference if isinstance(reference, Layout) else reference.layout
        check_payload(d, layout)
        seed = int(d["seed"])
        mv = None
        if d.get("multivariate") is not None and layout.multivariate is not None:
            col = layout.multivariate.decode(d["multivariate"], seed).columns[ERROR]
            assert isinstance(col, NumericProfile)
            mv = col
        return cls(
            str(d["deployment"]),
            str(d["model"]),
            int(d["version"]),
            str(d["role"]),
            datetime.fromisoformat(d["start"]).astimezone(UTC),
            int(d["seconds"]),
            int(d["rows"]),
            layout.inputs.decode(d["inputs"], seed),
            layout.prediction.decode(d["prediction"], seed),
            QualityProfile.from_dict(d.get("quality") or {}),
            mv,
            seed,
            layout,
        )


def check_payload(d: Mapping[str, Any], layout: Layout) -> None:
    if d.get("v") != FORMAT:
        raise ValueError(f"unsupported bucket profile format {d.get('v')!r}")
    if d.get("layout") != layout.digest:
        raise ValueError("the bucket was profiled on other bins than this reference's")


def _rows(frame: pd.DataFrame | Mapping[str, Any]) -> int:
    if isinstance(frame, pd.DataFrame):
        return len(frame)
    return len(next(iter(frame.values()))) if frame else 0


def shuffled(col: NumericProfile) -> NumericProfile:
    """The profile with its sample in a random order (seeded by its state), so that any
    prefix of the stored sample is a uniform subsample (what window draws rely on)."""
    if col.sample.size < 2:
        return col
    rng = np.random.default_rng(np.random.SeedSequence([col.seed, col.count, col.missing]))
    return replace(col, sample=rng.permutation(col.sample))


def _update_part(
    layout: PartLayout,
    profile: DatasetProfile,
    frame: pd.DataFrame | Mapping[str, Any],
    unseen: dict[str, Unseen] | None,
) -> DatasetProfile:
    """`profile` with the rows of `frame`; unseen categories folded into "__other__" (and,
    when `unseen` is given, summarised there by name)."""
    n = _rows(frame)
    cols: dict[str, ColumnProfile] = dict(profile.columns)
    for name in layout.numeric:
        col = cols[name]
        assert isinstance(col, NumericProfile)
        if name not in frame:
            cols[name] = replace(col, missing=col.missing + n)
        else:
            cols[name] = shuffled(col.update(frame[name]))
    for j, name in enumerate(layout.categorical):
        cat = cols[name]
        assert isinstance(cat, CategoricalProfile)
        if name not in frame:
            cols[name] = replace(cat, missing=cat.missing + n)
            continue
        counts, missing = _count_categories(frame[name])
        seen = layout.seen[j]
        new = {c: v for c, v in counts.items() if c not in seen}
        if new:
            if unseen is not None:
                unseen[name] = Unseen.of(new)
            counts = {c: v for c, v in counts.items() if c in seen}
            counts[OTHER_CATEGORY] = sum(new.values())
        merged = dict(cat.counts)
        for c, v in counts.items():
            merged[c] = merged.get(c, 0) + v
        cols[name] = CategoricalProfile(merged, cat.missing + missing, cat.max_categories)
    return DatasetProfile(profile.n_rows + n, cols)
