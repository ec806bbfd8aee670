"""Model files and training checkpoints: written atomically, read without unpickling code.

A model file holds the weights, the genotype as its canonical JSON string and the build
settings, all plain data, so :func:`load_model` can rebuild the network with ``build_model`` and
read the file with ``torch.load(weights_only=True)``: a file that smuggles in a pickled object is
refused rather than executed.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snnas.errors import CheckpointError, SnnasError
from snnas.files import atomic_write

MODEL_FORMAT = "snnas-model/1"


def check_plain(value: Any, where: str) -> None:
    """Refuse anything but JSON-like data (and tensors), so every file stays weights-only loadable."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where}: key {key!r} is not a string or integer")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise CheckpointError(f"{where}: {type(value).__name__} is not plain data (numbers, strings, lists, dicts, tensors)")


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` through the package's atomic writer: a crash never leaves a half-written
    checkpoint where a good one was."""
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with every failure turned into one :class:`CheckpointError` line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # refused globals, corrupt zip, truncated file, not a torch file at all
        # torch's own text advises weights_only=False (running the file's code): never pass that on
        lines = [line.strip() for line in str(exc).splitlines()
                 if line.strip() and "weights_only" not in line]
        detail = next((line for line in lines if "Unsupported global" in line), None)
        if isinstance(exc, pickle.UnpicklingError) and detail is not None:
            what = detail.split(" was not")[0]
            for noise in ("WeightsUnpickler error: ", "Unsupported global: "):
                what = what.replace(noise, "")
            raise CheckpointError(f"{path}: refused, the file holds pickled objects that are not plain weights"
                                  + (f" ({what[:120]})" if what else "") + "; snnas never runs code from a file"
                                  ) from None
        lines = [line for line in lines if "WeightsUnpickler" not in line] or lines
        first = lines[0].split(". ")[0] if lines else "not a torch file"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first[:160]})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dictionary of weights and settings, found {type(payload).__name__}")
    return payload


def model_record(model: nn.Module) -> dict[str, Any]:
    """The genotype (canonical JSON string) and build settings that rebuild ``model``."""
    genotype = getattr(model, "genotype", None)
    build_kwargs = getattr(model, "build_kwargs", None)
    if genotype is None or not callable(build_kwargs):
        raise CheckpointError(f"{type(model).__name__} has no genotype/build settings; only networks made by "
                              "build_model can be saved as model files")
    kwargs = dict(build_kwargs())
    check_plain(kwargs, "build_kwargs")
    return {"genotype": genotype.to_json(), "build_kwargs": kwargs}


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights on the CPU, detached, contiguous: the same bytes whatever device trained them."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_model(path: str | os.PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a network from ``build_model``) to ``path`` atomically.

    ``extra`` is free metadata (accuracy, data spec, ...) and must be plain data.
    """
    extra = {} if extra is None else dict(extra)
    check_plain(extra, "extra")
    payload = {"format": MODEL_FORMAT, **model_record(model), "state_dict": plain_state_dict(model), "extra": extra}
    return atomic_save(payload, path)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The checked contents of a model file (weights, genotype JSON, build settings, extra)."""
    payload = safe_load(path)
    if payload.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not an snnas model file (format {payload.get('format')!r}, "
                              f"expected {MODEL_FORMAT!r})")
    for key, kind in (("genotype", str), ("build_kwargs", dict), ("state_dict", dict), ("extra", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    return payload


def rebuild(genotype_json: str, build_kwargs: dict[str, Any], where: str) -> nn.Module:
    """``build_model`` from a stored genotype and settings, with failures named after ``where``."""
    from snnas import Genotype, build_model

    try:
        genotype = Genotype.from_json(genotype_json)
        return build_model(genotype, **build_kwargs)
    except SnnasError as exc:
        raise CheckpointError(f"{where}: stored network cannot be rebuilt: {exc}") from None
    except TypeError as exc:
        raise CheckpointError(f"{where}: stored build settings are not accepted: {exc}") from None


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the stored network: "
                              f"{' '.join(str(exc).split())[:300]}") from None


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved by :func:`save_model` and load its weights (in eval mode)."""
    payload = read_model_file(path)
    model = rebuild(payload["genotype"], payload["build_kwargs"], str(path))
    load_state(model, payload["state_dict"], str(path))
    return model.to(map_location).eval()
