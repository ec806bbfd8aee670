"""The networks a compiled network is held against: SpikingJelly's own model-zoo nets and the ANN twin.

Presets ``sew_resnet18``/``sew_resnet50`` and ``origin_resnet18`` compute exactly what SpikingJelly's
hand-written ``sew_resnet`` (ADD) and ``spiking_resnet`` compute: :class:`ZooNet` wraps those models
in the compiled network's calling convention (images in, the image repeated over T, logits averaged
over T, neuron state reset every call), and :func:`load_by_position` gives one the other's weights,
so equality and speed are measured on the same function. :func:`relu_twin` is the same topology
with ReLU for every spiking neuron: the ANN a spiking network's cost is read against at T=1.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet, spiking_resnet

from snnas.compiler.network import SpikingNet
from snnas.presets import get_preset

# preset name -> SpikingJelly's constructor and its own arguments (the neuron comes from the preset)
ZOO: dict[str, tuple[Callable[..., nn.Module], dict]] = {
    "sew_resnet18": (sew_resnet.sew_resnet18, {"cnf": "ADD"}),
    "sew_resnet50": (sew_resnet.sew_resnet50, {"cnf": "ADD"}),
    "origin_resnet18": (spiking_resnet.spiking_resnet18, {}),
}


class ZooNet(nn.Module):
    """SpikingJelly's model of a preset, multi-step, called like a :class:`SpikingNet`."""

    def __init__(self, preset: str, timesteps: int = 1, num_classes: int = 1000):
        super().__init__()
        if preset not in ZOO:
            raise ValueError(f"no SpikingJelly model for preset {preset!r}; known: {', '.join(ZOO)}")
        build, kwargs = ZOO[preset]
        spec = get_preset(preset).neuron  # IF in every preset of ZOO
        self.net = build(spiking_neuron=neuron.IFNode, surrogate_function=surrogate.Sigmoid(alpha=spec.surrogate_alpha),
                         v_threshold=spec.v_threshold, v_reset=spec.v_reset, detach_reset=spec.detach_reset,
                         num_classes=num_classes, **kwargs)
        functional.set_step_mode(self.net, "m")
        self.preset, self.num_classes, self.timesteps = preset, num_classes, timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(self.net)
        return self.net(x.unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1)).mean(0)


def load_by_position(target: nn.Module, source: nn.Module) -> None:
    """Load ``source``'s parameters and buffers into ``target`` in registration order (the two
    networks name their layers differently but register them in the same order)."""
    names = list(target.state_dict().items())
    values = list(source.state_dict().values())
    if len(names) != len(values):
        raise ValueError(f"{type(target).__name__} holds {len(names)} tensors, {type(source).__name__} {len(values)}")
    for (name, mine), theirs in zip(names, values):
        if mine.shape != theirs.shape:
            raise ValueError(f"{name}: shape {tuple(mine.shape)} against the source's {tuple(theirs.shape)}")
    target.load_state_dict({name: value for (name, _), value in zip(names, values)})


def relu_twin(model: SpikingNet) -> SpikingNet:
    """A copy of ``model`` with every spiking neuron replaced by ReLU, at T=1: the same convolutions,
    BNs, shortcuts, additions and weights, no membrane state. ``model`` keeps its modules; its neuron
    state is reset (as its every call does), since a membrane left from a training step cannot be copied."""
    functional.reset_net(model)
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, neuron.BaseNode):
            parent, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(parent), attr, nn.ReLU())
    functional.invalidate_reset_cache(twin)
    twin.timesteps = 1
    return twin
