"""Neuron and norm factories, injected into block builders like timm's ``act_layer``.

Each call builds a fresh module with a fresh surrogate function: SpikingJelly modules keep state,
and a surrogate instance shared through a default argument would be shared by every neuron.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn
from spikingjelly.activation_based import layer, neuron, surrogate

from snnas.compiler.choices import TDBN_ALPHA_AT_SUM, TDBN_ALPHA_ELSEWHERE
from snnas.compiler.gwr import GWRNode
from snnas.genotype import Neuron

NeuronFactory = Callable[[], nn.Module]
NormFactory = Callable[[int, bool], nn.Module]


def _common(spec: Neuron) -> dict:
    return dict(v_threshold=spec.v_threshold, v_reset=spec.v_reset, detach_reset=spec.detach_reset, step_mode="m",
                surrogate_function=surrogate.Sigmoid(alpha=spec.surrogate_alpha))


def _make_if(spec: Neuron, index: int) -> nn.Module:
    return neuron.IFNode(**_common(spec))


def _make_lif(spec: Neuron, index: int) -> nn.Module:
    return neuron.LIFNode(tau=spec.tau, decay_input=True, **_common(spec))


def _make_gwr(spec: Neuron, index: int) -> nn.Module:
    return GWRNode(g=spec.g, dilated=GWR_DILATED[spec.dil](index), lam=spec.lam, theta=spec.theta, proj=spec.proj,
                   condense=spec.condense, layer_index=index, **_common(spec))


# The gwr neuron's `dil` policy: whether the neuron layer numbered `index` (build order) dilates.
GWR_DILATED: dict[str, Callable[[int], bool]] = {
    "off": lambda index: False,
    "on": lambda index: True,
    "alt": lambda index: index % 2 == 1,
}
NEURON_BUILDERS: dict[str, Callable[[Neuron, int], nn.Module]] = {"if": _make_if, "lif": _make_lif, "gwr": _make_gwr}


class _NeuronMaker:
    """A network's neuron factory: builds one neuron per call and numbers them in build order
    (the gwr neuron's ``dil=alt`` reads the number). One maker per network built."""

    def __init__(self, spec: Neuron):
        self.spec, self.built = spec, 0

    def __call__(self) -> nn.Module:
        index, self.built = self.built, self.built + 1
        return NEURON_BUILDERS[self.spec.kind](self.spec, index)


def neuron_factory(spec: Neuron) -> NeuronFactory:
    """A fresh factory for one network (its layer count starts at 0)."""
    return _NeuronMaker(spec)


def norm_factory(kind: str, v_threshold: float) -> NormFactory:
    """``kind`` is the stage's norm gene; the bool argument says whether the BN feeds the addition."""

    def make_bn(channels: int, feeds_sum: bool) -> nn.Module:
        return layer.BatchNorm2d(channels, step_mode="m")

    def make_tdbn(channels: int, feeds_sum: bool) -> nn.Module:
        bn = layer.BatchNorm2d(channels, step_mode="m")
        alpha = TDBN_ALPHA_AT_SUM if feeds_sum else TDBN_ALPHA_ELSEWHERE
        nn.init.constant_(bn.weight, alpha * v_threshold)
        return bn

    return {"bn": make_bn, "tdbn": make_tdbn}[kind]
