"""Export a compiled network to NIR, the exchange format of neuromorphic platforms and simulators.

NIR graphs run one time step at a time on a fixed set of primitives (convolution, affine, pooling,
flatten, IF/LIF neurons; several edges into one node are summed), so the trained network is first
rewritten as an equivalent single-step *deployment* network of exactly those primitives, which
SpikingJelly 2.0's ``nir_exchange`` then maps node by node:

- a BatchNorm right after a convolution folds into that convolution (inference statistics);
- a BatchNorm that follows no convolution (the pre-activation ``pa_b`` block's first op, ``baa``'s
  BN after the addition, a DenseNet head) becomes an exact 1x1 convolution with a diagonal weight;
- residual and dense additions become NIR edges into one node;
- the global average pool of the head becomes an average pool over the last feature map;
- neurons keep their threshold, hard reset and tau.

What NIR cannot express is refused with the layer and the reason: the ImageNet stem's max-pool,
concatenation (``dense_concat`` and concatenating edges), soft reset. The readout of a snnas network
is the mean of the classifier's output over T steps of the same image: run the graph T steps on the
image and average its outputs (:func:`run_graph` does).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, neuron

from snnas.compiler.gwr import GWRNode
from snnas.compiler.network import SpikingNet
from snnas.errors import SnnasError
from snnas.files import atomic_write_to_path
from snnas.genotype.topology import INPUT

NIR_DT = 1e-4  # the time step SpikingJelly's exchange and most NIR tools assume


class NirError(SnnasError):
    """A network, or a part of it, that NIR cannot express (the message names the layer and why)."""


def _requires_nir():
    try:
        import nir  # noqa: F401
        from spikingjelly.activation_based import nir_exchange
    except ImportError:
        raise NirError("NIR export needs the optional packages nir and nirtorch: pip install 'snnas[nir]'") from None
    return nir_exchange


# ---------------------------------------------------------------- the deployment network
def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    """``conv`` followed by ``bn`` (eval statistics) as one convolution with a bias."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=True)
    weight = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = (bias - bn.running_mean) * scale + bn.bias.detach()
    out.weight.data.copy_(weight)
    out.bias.data.copy_(bias)
    return out


def _affine(bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A lone BatchNorm as the exact per-channel affine map it is at inference: a 1x1 convolution
    with a diagonal weight."""
    channels = bn.num_features
    conv = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
    conv.weight.data.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return _folded(conv, bn)


def _neuron(sn: neuron.BaseNode, where: str) -> nn.Module:
    if isinstance(sn, GWRNode):
        raise NirError(f"{where}: the gwr neuron carries membranes between windows of its map within a "
                       "time step; NIR neurons are pointwise (IF and LIF export)")
    if sn.v_reset is None:
        raise NirError(f"{where}: soft reset (subtracting the threshold) has no NIR equivalent; "
                       "NIR neurons reset to v_reset")
    if isinstance(sn, neuron.LIFNode):
        return neuron.LIFNode(tau=sn.tau, decay_input=sn.decay_input, v_threshold=sn.v_threshold,
                              v_reset=sn.v_reset, step_mode="s")
    if isinstance(sn, neuron.IFNode):
        return neuron.IFNode(v_threshold=sn.v_threshold, v_reset=sn.v_reset, step_mode="s")
    raise NirError(f"{where}: {type(sn).__name__} neurons have no NIR mapping (IF and LIF have)")


def _ops(seq: nn.Sequential | None, where: str) -> nn.Sequential:
    """A block's op sequence (conv, bn, sn, avg-pool) as deployment primitives."""
    out: list[nn.Module] = []
    children = list(seq.named_children()) if seq is not None else []
    i = 0
    while i < len(children):
        name, m = children[i]
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        if isinstance(m, nn.Conv2d):
            bn = nxt if isinstance(nxt, nn.BatchNorm2d) else None
            out.append(_folded(m, bn))
            i += 2 if bn is not None else 1
            continue
        if isinstance(m, nn.BatchNorm2d):
            out.append(_affine(m))
        elif isinstance(m, neuron.BaseNode):
            out.append(_neuron(m, f"{where}.{name}"))
        elif isinstance(m, nn.AvgPool2d):
            out.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.MaxPool2d):
            raise NirError(f"{where}.{name}: max-pooling has no NIR equivalent")
        else:
            raise NirError(f"{where}.{name}: {type(m).__name__} has no NIR mapping")
        i += 1
    return nn.Sequential(*out)


class _DeployBlock(nn.Module):
    def __init__(self, block: nn.Module, where: str):
        super().__init__()
        self.branch = _ops(block.branch, f"{where}.branch")
        shortcut = getattr(block, "shortcut", None)
        self.residual = hasattr(block, "interblock")  # a DenseLayer adds no identity
        self.shortcut = _ops(shortcut, f"{where}.shortcut") if shortcut is not None else None
        interblock = getattr(block, "interblock", None)
        self.interblock = _ops(interblock, f"{where}.interblock") if interblock is not None else None

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.branch(z)
        if not self.residual:
            return f, f
        s = f + (z if self.shortcut is None else self.shortcut(z))
        return (s if self.interblock is None else self.interblock(s)), f


class _DeployStage(nn.Module):
    def __init__(self, stage: nn.Module, where: str):
        super().__init__()
        for k, node in enumerate(stage.inputs):
            if node.concat:
                target = f"{where}.blocks.{k}" if k < len(stage.blocks) else f"the output of {where}"
                raise NirError(f"{target} concatenates its inputs; NIR sums the edges into a node and has "
                               "no concatenation")
        self.blocks = nn.ModuleList(_DeployBlock(b, f"{where}.blocks.{k}") for k, b in enumerate(stage.blocks))
        self.inputs, self.is_chain = stage.inputs, stage.is_chain
        self.transition = _ops(stage.transition, f"{where}.transition") if stage.transition is not None else None

    def _sum(self, node, outputs: dict, branches: dict) -> torch.Tensor:
        terms = [branches[s] if branch_only else outputs[s] for s, branch_only in node.add]
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_chain:
            for block in self.blocks:
                x = block(x)[0]
        else:
            outputs, branches = {INPUT: x}, {}
            for k, block in enumerate(self.blocks):
                outputs[k], branches[k] = block(self._sum(self.inputs[k], outputs, branches))
            x = self._sum(self.inputs[-1], outputs, branches)
        return x if self.transition is None else self.transition(x)


class DeployNet(nn.Module):
    """The single-step network of NIR primitives equal to a :class:`SpikingNet` in eval mode."""

    def __init__(self, model: SpikingNet, feature_side: tuple[int, int]):
        super().__init__()
        stem = model.stem
        if stem.pool is not None:
            raise NirError("stem.pool: the ImageNet stem's max-pooling has no NIR equivalent; export a network "
                           "built with the `half` or `small` stem (retrain --stem half)")
        self.stem = nn.Sequential(_folded(stem.conv, stem.bn), *([_neuron(stem.sn, "stem.sn")] if stem.sn else []))
        self.stages = nn.ModuleList(_DeployStage(s, f"stages.{i}") for i, s in enumerate(model.stages))
        head = model.head
        pre = [_affine(head.bn), _neuron(head.sn, "head.sn")] if head.bn is not None else []
        self.head = nn.Sequential(*pre, nn.AvgPool2d(feature_side), nn.Flatten())
        self.fc = nn.Linear(head.fc.in_features, head.fc.out_features)
        self.fc.load_state_dict(head.fc.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.fc(self.head(h))


def deployable(model: SpikingNet, resolution: int) -> DeployNet:
    """``model`` (its weights and BN statistics as they are) as a :class:`DeployNet`."""
    model = model.eval()
    probe = torch.zeros(1, model.in_channels, resolution, resolution)
    with torch.no_grad():
        _, stages = model(probe, return_stages=True)
    functional.reset_net(model)
    return DeployNet(model, tuple(stages[-1].shape[-2:])).eval()


# ---------------------------------------------------------------- export, read back, run
def export_graph(model: SpikingNet, resolution: int, path: str | os.PathLike | None = None):
    """The NIR graph of ``model`` for ``resolution``-pixel images (written to ``path`` when given)."""
    exchange = _requires_nir()
    import nir

    net = deployable(model, resolution)
    example = torch.zeros(1, model.in_channels, resolution, resolution)
    try:
        graph = exchange.export_to_nir(net, example, dt=NIR_DT)
    except NotImplementedError as exc:
        raise NirError(f"NIR export: {exc}") from None
    if path is not None:
        atomic_write_to_path(path, lambda tmp: nir.write(str(tmp), graph))
    return graph


def run_graph(graph_or_path: Any, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Logits of a NIR graph on images ``x``: T steps of the same image, outputs averaged (the
    readout of a snnas network)."""
    exchange = _requires_nir()
    module = exchange.import_from_nir(graph_or_path if not isinstance(graph_or_path, Path) else str(graph_or_path),
                                      dt=NIR_DT, step_mode="m")
    with torch.no_grad():
        out, _ = module(x.unsqueeze(0).expand(timesteps, *x.shape).contiguous())
    return out.mean(0)


def node_summary(graph) -> dict[str, Any]:
    """How many NIR nodes there are, and which belong to which block (by the deployment path)."""
    counts: Counter = Counter()
    for name in graph.nodes:
        parts = name.replace("_", ".").split(".")
        if parts[:1] == ["stages"] and len(parts) >= 4 and parts[2] == "blocks":
            counts[f"stage {int(parts[1]) + 1} block {int(parts[3]) + 1}"] += 1
        elif parts[:1] == ["stages"] and len(parts) >= 2:
            counts[f"stage {int(parts[1]) + 1} transition"] += 1
        elif parts[0] in ("x", "input"):
            counts["input"] += 1
        else:
            counts[parts[0]] += 1
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "by_block": dict(counts)}
