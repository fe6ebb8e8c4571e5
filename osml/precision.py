"""The precision predictions are published with, in API answers and stored rows alike: the SLA risk to four
decimals (orders_prediction.sla_risk is numeric(5,4)) and the ETA in whole minutes, never negative."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def published_sla_risk(values: npt.ArrayLike) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float), 4)


def published_eta_minutes(values: npt.ArrayLike) -> np.ndarray:
    return np.maximum(np.rint(np.asarray(values, dtype=float)), 0).astype(np.int64)
