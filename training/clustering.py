"""KMeans over order patterns (docs/model-card.md, Clusters): priority, category, when it was opened, how long it took."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

MAX_ROWS = 20_000  # KMeans is fitted on a sample: patterns, not individuals, are the point
SILHOUETTE_SAMPLE = 3_000
TOP_CATEGORIES = 10


@dataclass(frozen=True)
class ClusterReport:
    k: int
    silhouette: float
    silhouettes: dict[int, float]  # k -> silhouette, for every k tried
    profiles: pd.DataFrame  # one row per cluster


def _pattern_matrix(features: pd.DataFrame, minutes: pd.Series) -> np.ndarray:
    top = features["category"].value_counts().index[:TOP_CATEGORIES]
    category = features["category"].where(features["category"].isin(top), "other")
    hour = features["createdHour"].astype(float)
    done = minutes.notna()
    log_minutes = np.log1p(minutes.fillna(minutes[done].median() if done.any() else 0.0).clip(lower=0))
    parts = [
        pd.get_dummies(features["priority"].astype(str), dtype=float),
        pd.get_dummies(category.astype(str), dtype=float),
        pd.DataFrame(
            {
                "hour_sin": np.sin(2 * np.pi * hour / 24),
                "hour_cos": np.cos(2 * np.pi * hour / 24),
                "weekend": (features["createdDayOfWeek"] >= 5).astype(float),
                "log_minutes": log_minutes,
            },
            index=features.index,
        ),
    ]
    return StandardScaler().fit_transform(pd.concat(parts, axis=1).to_numpy(dtype=float))


def cluster_orders(
    features: pd.DataFrame, minutes: pd.Series, sla: pd.Series, *, random_state: int, ks: tuple[int, ...] = (3, 4, 5, 6)
) -> ClusterReport:
    rng = np.random.default_rng(random_state)
    rows = rng.choice(len(features), size=min(MAX_ROWS, len(features)), replace=False)
    sample_features = features.iloc[rows]
    matrix = _pattern_matrix(sample_features, minutes.iloc[rows])
    scores: dict[int, float] = {}
    models: dict[int, KMeans] = {}
    for k in ks:
        if k >= len(matrix):
            continue
        model = KMeans(n_clusters=k, n_init=3, random_state=random_state).fit(matrix)
        scores[k] = float(
            silhouette_score(
                matrix, model.labels_, sample_size=min(SILHOUETTE_SAMPLE, len(matrix)), random_state=random_state
            )
        )
        models[k] = model
    if not scores:
        raise ValueError(f"too few orders ({len(features)}) to cluster")
    best = max(scores, key=lambda k: scores[k])
    labels = models[best].labels_
    frame = pd.DataFrame(
        {
            "cluster": labels,
            "priority": sample_features["priority"].astype(str).to_numpy(),
            "category": sample_features["category"].astype(str).to_numpy(),
            "createdHour": sample_features["createdHour"].to_numpy(),
            "minutes": minutes.iloc[rows].to_numpy(),
            "breached": sla.iloc[rows].to_numpy(),
        }
    )
    profiles = frame.groupby("cluster").agg(
        orders=("cluster", "size"),
        top_priority=("priority", lambda s: s.value_counts().index[0]),
        top_priority_share=("priority", lambda s: float(s.value_counts(normalize=True).iloc[0])),
        top_categories=("category", lambda s: ", ".join(s.value_counts().index[:3])),
        mean_created_hour=("createdHour", "mean"),
        median_resolution_minutes=("minutes", "median"),
        breach_rate=("breached", "mean"),
    )
    profiles["share"] = profiles["orders"] / profiles["orders"].sum()
    return ClusterReport(best, scores[best], scores, profiles.reset_index())
