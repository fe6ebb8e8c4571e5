"""The MLflow pyfunc of every registered osml model, logged as "models from code" (`training/pipeline.py`).

MLflow runs this file when it loads the model (`mlflow.pyfunc.load_model`, `mlflow models serve`): it finds
`osml` among the model's shipped code (`osml.model_files.RUNTIME_MODULES`) and reads the model's data files.
Nothing is unpickled. The facade does not use this file: it reads the same data files itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel, PythonModelContext

from osml import model_files
from osml.runtime import RuntimeModel


class OrderModel(PythonModel):
    """One prediction per DataFrame row: SLA models give breach probabilities, ETA models minutes."""

    def load_context(self, context: PythonModelContext) -> None:
        self.model: RuntimeModel = model_files.load(Path(context.artifacts[model_files.ARTIFACT]))

    def predict(
        self, context: PythonModelContext | None, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.model.predict(frame)


set_model(OrderModel())
