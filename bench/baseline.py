"""The benchmark's baseline: the SLA model as a user would build and serve it without osml.

A scikit-learn `Pipeline` (an `OrdinalEncoder` for the categorical columns, then an `XGBClassifier`) trained on
the same synthetic orders, logged with `mlflow.sklearn` and served by `mlflow models serve`. (The native
`mlflow.xgboost` flavor cannot take categorical strings from JSON, so it is no baseline.) It is trained for the
benchmark only, never registered, and sees every feature column in each request, missing ones as null.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from xgboost import XGBClassifier

from osml.schema import SCHEMAS, SEED_EXAMPLE_FEATURES

EXPERIMENT = "osml-bench-baseline"


def _frame(schema_version: str) -> tuple[pd.DataFrame, np.ndarray]:
    from training.data.synthetic import generate
    from training.features import build_training_frame

    frame = build_training_frame(generate(orders=5_000, seed=7), schema_version=schema_version)
    labeled = frame.sla.notna().to_numpy()
    categorical, numeric = SCHEMAS[schema_version]
    features = frame.features.loc[labeled, list(categorical + numeric)].copy()
    features[list(categorical)] = features[list(categorical)].astype(object).where(features.notna(), None)
    features[list(numeric)] = features[list(numeric)].astype(float)
    return features.reset_index(drop=True), frame.sla.to_numpy()[labeled].astype(int)


def log_pipeline(tracking_uri: str, schema_version: str) -> str:
    """Train and log the pipeline in `tracking_uri`; its model URI."""
    categorical, numeric = SCHEMAS[schema_version]
    features, labels = _frame(schema_version)
    pipeline = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        (
                            "categorical",
                            OrdinalEncoder(
                                handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
                            ),
                            list(categorical),
                        )
                    ],
                    remainder="passthrough",
                ),
            ),
            ("classify", XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.05, n_jobs=1)),
        ]
    )
    pipeline.fit(features, labels)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="sklearn pipeline baseline"):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=ModelSignature(
                inputs=Schema(
                    [
                        *(ColSpec("string", c, required=False) for c in categorical),
                        *(ColSpec("double", c, required=False) for c in numeric),
                    ]
                ),
                outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2))]),
            ),
            input_example=features.head(2),
            pyfunc_predict_fn="predict_proba",
            # MLflow saves scikit-learn models with skops, which loads only the types it is told to trust
            skops_trusted_types=["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"],
        )
    return str(info.model_uri)


def request_record(schema_version: str) -> dict[str, Any]:
    """The seed's order with every column the pipeline needs, missing ones as null, numbers as floats (the
    signature's doubles: MLflow refuses to convert JSON integers to them)."""
    categorical, numeric = SCHEMAS[schema_version]
    record: dict[str, Any] = {c: SEED_EXAMPLE_FEATURES.get(c) for c in categorical}
    for c in numeric:
        value = SEED_EXAMPLE_FEATURES.get(c)
        record[c] = None if value is None else float(value)
    return record
