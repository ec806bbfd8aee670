"""Networks for the NIR tests: tiny, with BatchNorm statistics that are not the initial ones."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

from snnas import Genotype, build_model, get_preset


def trained_like(genotype: Genotype, timesteps: int = 2, seed: int = 0):
    """A tiny network with BN statistics that are not the initial ones (gathered on 16 px noise), in
    eval mode."""
    torch.manual_seed(seed)
    model = build_model(genotype, num_classes=5, in_channels=1, timesteps=timesteps, width_mult=0.0625)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 16, 16) * 2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # affine parameters away from 1 and 0 too
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.4)
    return model.eval()


def require(module: str):
    """``module`` imported; without it the tests skip here and fail under CI (``CI`` set), which
    installs it with the ``dev`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is required under CI (pip install -e '.[dev]'): {exc}")
        pytest.skip(f"{module} not installed: pip install 'snnas[nir-interop]'", allow_module_level=True)


BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))  # the float32 right below the threshold 1


def _stem_potentials(model, first: float, second: float):
    """On a blank image a stem neuron's potential is its BatchNorm's bias: channel 0 gets ``first``,
    channel 1 ``second``, the others 0."""
    bn = model.stem.bn
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.bias.zero_()
        bn.bias[0], bn.bias[1] = first, second
    return model


def on_the_threshold(resolution: int):
    """An origin network and blank images on which stem channel 0 sits exactly on the threshold
    (snnas fires) and channel 1 one float32 step below it (snnas does not); with the logits of that
    network and of the two networks a runtime off by one step in either direction would compute."""
    model = trained_like(get_preset("origin_resnet18").replace(stem="half"), timesteps=1)
    x = torch.zeros(2, 1, resolution, resolution)
    logits = {}
    for pair in ((BELOW_ONE, BELOW_ONE), (1.0, 1.0), (1.0, BELOW_ONE)):
        with torch.no_grad():
            logits[pair] = _stem_potentials(model, *pair)(x)
    expected = logits.pop((1.0, BELOW_ONE))
    return model, x, expected, list(logits.values())
