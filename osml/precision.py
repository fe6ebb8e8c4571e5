"""The precision predictions are published with, in API answers and stored rows alike: the SLA risk to four
decimals (orders_prediction.sla_risk is numeric(5,4)) and the ETA in whole minutes, never negative.

Python's round on Python floats: per-value numpy calls would cost a one-row /predict more than its model.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def published_sla_risk(values: npt.ArrayLike) -> list[float]:
    return [round(v, 4) for v in np.asarray(values, dtype=float).ravel().tolist()]


def published_eta_minutes(values: npt.ArrayLike) -> list[int]:
    return [max(round(v), 0) for v in np.asarray(values, dtype=float).ravel().tolist()]
