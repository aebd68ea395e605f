"""One loaded model version and the micro-batcher in front of it: rows in, outputs out."""

from __future__ import annotations

from typing import Any

from relevo.registry.flavors.base import RawOutput
from relevo.registry.registry import LoadedVersion
from relevo.registry.types import ModelVersion
from relevo.serving.batching import MicroBatcher
from relevo.serving.frames import Part, build_frame, build_matrix, merge_parts
from relevo.serving.native_threads import model_loaded
from relevo.serving.outputs import format_outputs
from relevo.serving.validation import Plan


class ModelRunner:
    """Scores batches of validated rows with one model version."""

    def __init__(self, loaded: LoadedVersion, max_rows: int, max_wait_s: float) -> None:
        model_loaded()  # the worker threads limit any native library it brought
        self.version: ModelVersion = loaded.version
        self.model = loaded.model
        self.ref = loaded.version.ref
        self.signature = loaded.version.signature
        self.plan = Plan(self.signature)
        # the registry records per version whether the model takes a NumPy array (cheapest by
        # far for sklearn) or needs a DataFrame; versions without the record take a DataFrame
        self.input_format: str = getattr(self.model, "input_format", "frame")
        self._predict_array: Any = getattr(self.model, "predict_array", None)
        if self._predict_array is None:
            self.input_format = "frame"
        #: whether another version takes the same input, by its ref (asked per request)
        self._same_input: dict[str, bool] = {}
        self.batcher = MicroBatcher(
            self.run, max_rows=max_rows, max_wait_s=max_wait_s, merge=merge_parts
        )

    def same_input(self, other: ModelRunner) -> bool:
        """True when `other` has this version's signature (its rows need no validating again)."""
        same = self._same_input.get(other.ref)
        if same is None:
            same = self._same_input[other.ref] = self.signature == other.signature
        return same

    def raw(self, part: Part) -> RawOutput:
        """The model's raw output on validated rows, given in the form it takes fastest."""
        if self.input_format == "array":
            raw: RawOutput = self._predict_array(build_matrix(part, self.plan))
            return raw
        return self.model.predict(build_frame(part, self.plan))

    def run(self, part: Part, n: int) -> list[dict[str, Any]]:
        return format_outputs(self.version.task, self.version.classes, self.raw(part))
