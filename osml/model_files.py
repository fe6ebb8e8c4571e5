"""A runtime model as data files: the booster in XGBoost's own UBJSON, everything else JSON or NumPy `.npy`.

    model.json    task, features schema, columns, vocabularies, calibration (pydantic-validated on load)
    booster.ubj   the XGBoost booster (`Booster.save_model`)
    sample.npy    encoded validation rows: every load verifies the compiled single-row trees against them
    profile.json  optional: the training rows' profile of every feature and of the output (`osml.profile`),
                  which the facade's drift monitor compares served rows with

Loading parses these formats and nothing else: no reader here can unpickle (`np.load(allow_pickle=False)`,
XGBoost's model parsers, JSON), and a file that starts like a pickle is refused before any reader sees it.
Training logs this directory as the MLflow model's artifact (`training/pipeline.py`), with the modules in
`RUNTIME_MODULES` shipped as its code; the facade reads the same files with its own installed code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from osml.profile import Profile
from osml.runtime import Calibrator, EtaMinutesModel, FeatureEncoder, RuntimeModel, SlaRiskModel, XGBoostScorer

FORMAT = "osml-model/1"
ARTIFACT = "model_files"  # the directory's name, and its key among the MLflow model's artifacts
META_FILE = "model.json"
BOOSTER_FILE = "booster.ubj"
SAMPLE_FILE = "sample.npy"
PROFILE_FILE = "profile.json"
FILES = (META_FILE, BOOSTER_FILE, SAMPLE_FILE)

# The package modules a registered model needs to load and predict without osml installed (`code_paths`).
RUNTIME_MODULES = ("__init__.py", "schema.py", "runtime.py", "treeshap.py", "profile.py", "model_files.py")

# Pickle protocols 2-5 open with the PROTO opcode: such a file is refused by name, before any parser reads it.
_PICKLE_PROTO = b"\x80"


class ModelFileError(ValueError):
    """The directory does not hold a valid osml model (missing, malformed, or pickled files)."""


class _Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["isotonic", "platt"]
    x: list[float] = []
    y: list[float] = []
    slope: float = 1.0
    intercept: float = 0.0


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["osml-model/1"]
    task: Literal["sla", "eta"]
    schemaVersion: Annotated[str, Field(min_length=1)]
    categorical: list[str]
    numeric: list[str]
    vocabularies: list[dict[str, Annotated[int, Field(ge=1)]]]
    calibration: _Calibration | None = None
    # SLA: the label is the due-date rule, so an overdue order answers 1.0 (osml/runtime.py SlaRiskModel)
    overdueIsBreach: bool = False


def save(model: RuntimeModel, directory: Path) -> Path:
    """Write `model` into `directory` (created when missing; its files are overwritten) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    encoder, scorer = model.encoder, model.scorer
    calibration = None
    if isinstance(model, SlaRiskModel):
        c = model.calibrator
        calibration = _Calibration(
            method=c.method, x=c.x.tolist(), y=c.y.tolist(), slope=float(c.slope), intercept=float(c.intercept)
        )
    meta = _Meta(
        format=FORMAT,
        task="sla" if isinstance(model, SlaRiskModel) else "eta",
        schemaVersion=encoder.schema_version,
        categorical=list(encoder.categorical),
        numeric=list(encoder.numeric),
        vocabularies=[dict(v) for v in encoder.vocabularies],
        calibration=calibration,
        overdueIsBreach=isinstance(model, SlaRiskModel) and model.overdue_is_breach,
    )
    (directory / META_FILE).write_text(meta.model_dump_json(indent=1))
    scorer.booster.save_model(str(directory / BOOSTER_FILE))
    sample = scorer.sample if scorer.sample is not None else np.empty((0, len(encoder.columns)), dtype=np.float32)
    np.save(directory / SAMPLE_FILE, sample, allow_pickle=False)
    if model.profile is not None:
        (directory / PROFILE_FILE).write_text(model.profile.model_dump_json())
    return directory


def _data_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise ModelFileError(f"{directory} has no {name}")
    with path.open("rb") as handle:
        if handle.read(1) == _PICKLE_PROTO:
            raise ModelFileError(f"{path} is a pickle: refused, never unpickled")
    return path


def load(directory: Path) -> RuntimeModel:
    """The model saved in `directory` (with its profile when it has one); ModelFileError for anything else."""
    model = _load_model(directory)
    if (directory / PROFILE_FILE).exists():
        try:
            model.profile = Profile.model_validate_json(_data_file(directory, PROFILE_FILE).read_bytes())
        except ValidationError as exc:
            raise ModelFileError(f"{directory / PROFILE_FILE} is not an osml profile: {exc}") from exc
    return model


def _load_model(directory: Path) -> RuntimeModel:
    try:
        meta = _Meta.model_validate_json(_data_file(directory, META_FILE).read_bytes())
        booster = xgb.Booster()
        booster.load_model(str(_data_file(directory, BOOSTER_FILE)))
        sample = np.load(_data_file(directory, SAMPLE_FILE), allow_pickle=False)
    except ModelFileError:
        raise
    except ValidationError as exc:
        raise ModelFileError(f"{directory / META_FILE} is not an osml model description: {exc}") from exc
    except (xgb.core.XGBoostError, ValueError, OSError) as exc:
        raise ModelFileError(f"{directory} holds an unreadable model file: {exc}") from exc
    if sample.dtype != np.float32 or sample.ndim != 2:
        raise ModelFileError(f"{directory / SAMPLE_FILE} is not a float32 matrix")
    if len(meta.vocabularies) != len(meta.categorical):
        raise ModelFileError(f"{directory / META_FILE}: one vocabulary per categorical column expected")
    encoder = FeatureEncoder(meta.schemaVersion, tuple(meta.categorical), tuple(meta.numeric), tuple(meta.vocabularies))
    if booster.num_features() != len(encoder.columns) or sample.shape[1:] != (len(encoder.columns),):
        raise ModelFileError(f"{directory}: the booster, sample and columns disagree on the number of features")
    try:
        scorer = XGBoostScorer(booster, sample=sample)
    except ValueError as exc:  # an objective the runtime has no link for
        raise ModelFileError(f"{directory / BOOSTER_FILE}: {exc}") from exc
    if meta.task == "eta":
        return EtaMinutesModel(encoder, scorer)
    if meta.calibration is None:
        raise ModelFileError(f"{directory / META_FILE}: an SLA model needs its calibration")
    c = meta.calibration
    calibrator = Calibrator(c.method, x=np.asarray(c.x), y=np.asarray(c.y), slope=c.slope, intercept=c.intercept)
    return SlaRiskModel(encoder, scorer, calibrator, overdue_is_breach=meta.overdueIsBreach)


def stage_runtime_code(destination: Path) -> Path:
    """A copy of the `RUNTIME_MODULES` as package `osml` under `destination`: a model's `code_paths` entry."""
    package = destination / "osml"
    package.mkdir(parents=True)
    source = Path(__file__).resolve().parent
    for name in RUNTIME_MODULES:
        shutil.copy2(source / name, package / name)
    return package
