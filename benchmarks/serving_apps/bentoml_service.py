"""The BentoML 1.4 row of benchmarks/serving.py: the churn pipeline behind a JSON list-of-dicts
endpoint, one worker. Runs in the peer virtual environment under benchmarks/.work/, never in
relevo's. The model path comes from BENCH_MODEL_PATH.

Run: bentoml serve bentoml_service:Churn --port PORT (from benchmarks/serving_apps)
"""

import os
from typing import Any

import bentoml
import joblib
import pandas as pd


@bentoml.service(workers=1)
class Churn:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        frame = pd.DataFrame(rows)
        return self.model.predict_proba(frame)[:, 1].tolist()
