"""Row (c) of benchmarks/serving.py: the plainest FastAPI endpoint serving the churn pipeline.

`await request.json()`, a one-row DataFrame, `predict_proba` per request. The model path comes
from BENCH_MODEL_PATH; with BENCH_NUMPY=1 (the cheap all-numeric model) the row goes in as a
NumPy array in the model's feature order instead, the fastest a bare endpoint can do.

Run: uvicorn bare_fastapi:app --app-dir benchmarks/serving_apps
"""

import os
import warnings

import joblib
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request

model = joblib.load(os.environ["BENCH_MODEL_PATH"])
NUMPY = os.environ.get("BENCH_NUMPY") == "1"
COLUMNS = list(getattr(model, "feature_names_in_", []))
# a model fitted on a DataFrame warns when given an array; the warning is not the point here
warnings.filterwarnings("ignore", message="X does not have valid feature names")
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> dict[str, float]:
    row = await request.json()
    if NUMPY:
        x = np.asarray([[row[c] for c in COLUMNS]], dtype=np.float64)
        return {"probability": float(model.predict_proba(x)[0, 1])}
    frame = pd.DataFrame([row])
    return {"probability": float(model.predict_proba(frame)[0, 1])}
