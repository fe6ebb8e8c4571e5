"""Models as data (osml.model_files): a saved model predicts exactly as the trained one, and pickles are refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModelContext

from osml import model_files
from osml.model_files import ModelFileError
from osml.runtime import EtaMinutesModel, SlaRiskModel
from tests.support import SEED_FEATURES

pytestmark = pytest.mark.unit


def _writes(marker: Path) -> object:
    """An object whose unpickling writes `marker`: what an attacker with registry write access would plant."""

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return exec, (f"open({str(marker)!r}, 'w').write('ran')",)

    return Payload()


@pytest.mark.parametrize("kind", ["sla", "eta"])
def test_a_saved_model_predicts_exactly_as_the_trained_one(
    kind: str,
    sla_model: SlaRiskModel,
    eta_model: EtaMinutesModel,
    feature_rows,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    model = sla_model if kind == "sla" else eta_model
    loaded = model_files.load(model_files.save(model, tmp_path / "model"))
    rows = [*feature_rows, SEED_FEATURES]
    assert type(loaded) is type(model) and loaded.schema_version == model.schema_version
    assert loaded.scorer.compiled is not None  # the single-row trees compiled and verified again at load
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    np.testing.assert_array_equal([loaded.predict([r])[0] for r in rows], model.predict(rows))


def test_saved_files_are_json_ubjson_and_npy_only(sla_model: SlaRiskModel, tmp_path: Path) -> None:
    directory = model_files.save(sla_model, tmp_path / "model")
    assert sorted(p.name for p in directory.iterdir()) == sorted(model_files.FILES)
    assert (directory / model_files.META_FILE).read_bytes().startswith(b"{")
    assert (directory / model_files.BOOSTER_FILE).read_bytes()[:1] == b"{"  # UBJSON opens an object with '{'
    assert (directory / model_files.SAMPLE_FILE).read_bytes().startswith(b"\x93NUMPY")


@pytest.mark.parametrize("name", model_files.FILES)
@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_planted_pickle_is_refused_without_running_it(
    name: str, protocol: int, sla_model: SlaRiskModel, tmp_path: Path
) -> None:
    directory = model_files.save(sla_model, tmp_path / "model")
    marker = tmp_path / "pwned"
    (directory / name).write_bytes(pickle.dumps(_writes(marker), protocol=protocol))
    with pytest.raises(ModelFileError):
        model_files.load(directory)
    assert not marker.exists()


def test_a_missing_or_foreign_description_is_refused(sla_model: SlaRiskModel, tmp_path: Path) -> None:
    directory = model_files.save(sla_model, tmp_path / "model")
    (directory / model_files.META_FILE).write_text('{"format": "osml-model/1", "task": "sla"}')
    with pytest.raises(ModelFileError, match="not an osml model description"):
        model_files.load(directory)
    (directory / model_files.META_FILE).unlink()
    with pytest.raises(ModelFileError, match=r"has no model\.json"):
        model_files.load(directory)


def test_the_pyfunc_predicts_a_dataframe_with_the_same_path(sla_model: SlaRiskModel, tmp_path: Path) -> None:
    from osml.mlflow_model import OrderModel

    directory = model_files.save(sla_model, tmp_path / model_files.ARTIFACT)
    pyfunc = OrderModel()
    pyfunc.load_context(PythonModelContext(artifacts={model_files.ARTIFACT: str(directory)}, model_config={}))
    frame = pd.DataFrame([SEED_FEATURES, {**SEED_FEATURES, "priority": "LOW", "dueInMinutes": None}])
    np.testing.assert_array_equal(pyfunc.predict(None, frame), sla_model.predict(frame))


def test_staged_runtime_code_is_the_package_modules_only(tmp_path: Path) -> None:
    package = model_files.stage_runtime_code(tmp_path)
    assert sorted(p.name for p in package.iterdir()) == sorted(model_files.RUNTIME_MODULES)
    assert package.name == "osml"


def test_the_due_date_rule_is_saved_with_an_sla_model(sla_model: SlaRiskModel, tmp_path: Path) -> None:
    rule = SlaRiskModel(sla_model.encoder, sla_model.scorer, sla_model.calibrator, overdue_is_breach=True)
    loaded = model_files.load(model_files.save(rule, tmp_path / "m"))
    assert isinstance(loaded, SlaRiskModel) and loaded.overdue_is_breach
    assert not model_files.load(model_files.save(sla_model, tmp_path / "n")).overdue_is_breach
