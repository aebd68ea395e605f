"""Row (c) of benchmarks/serving.py: the plainest FastAPI endpoint serving the churn pipeline.

`await request.json()`, a one-row DataFrame, `predict_proba` per request. The model path comes
from BENCH_MODEL_PATH. Run: uvicorn bare_fastapi:app --app-dir benchmarks/serving_apps
"""

import os

import joblib
import pandas as pd
from fastapi import FastAPI, Request

model = joblib.load(os.environ["BENCH_MODEL_PATH"])
app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> dict[str, float]:
    row = await request.json()
    frame = pd.DataFrame([row])
    return {"probability": float(model.predict_proba(frame)[0, 1])}
