"""Export a compiled network to NIR, the exchange format of neuromorphic platforms and simulators.

NIR graphs run one time step at a time on a fixed set of primitives (convolution, affine, pooling,
flatten, IF/LIF neurons; several edges into one node are summed), so the trained network is first
rewritten as an equivalent single-step *deployment* network of exactly those primitives, which
SpikingJelly 2.0's ``nir_exchange`` then maps node by node:

- a BatchNorm right after a convolution folds into that convolution (inference statistics);
- a BatchNorm that follows no convolution (the pre-activation ``pa_b`` block's first op, ``baa``'s
  BN after the addition, a DenseNet head) becomes an exact 1x1 convolution with a diagonal weight;
- residual and dense additions become NIR edges into one node;
- the global average pool of the head becomes an average pool over the last feature map, or, with
  ``fold_pools``, part of the classifier's affine map (every pool folds into the linear map next to
  it, for readers without an AvgPool2d node);
- neurons keep their hard reset and tau; their threshold is written one float32 step lower, because
  NIR's neurons fire on v > threshold and SpikingJelly's (so snnas's) on v >= threshold.

Every spatial field is written per axis (kernel, stride, padding: two values), as NIR's node
definitions give them. What NIR cannot express is refused with the layer and the reason: the
ImageNet stem's max-pool, concatenation (``dense_concat`` and concatenating edges), soft reset.
The readout of a snnas network is the mean of the classifier's output over T steps of the same
image: run the graph T steps on the image and average its outputs (:func:`run_graph` does).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, neuron
from torch.nn.modules.utils import _pair

from snnas.compiler.gwr import GWRNode
from snnas.compiler.network import SpikingNet
from snnas.errors import SnnasError
from snnas.files import atomic_write_to_path
from snnas.genotype.topology import INPUT

NIR_DT = 1e-4  # seconds: the time step SpikingJelly's exchange and most NIR tools assume (IF r = 1/dt)


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


def _pool_folded(conv: nn.Module | None, pool: nn.AvgPool2d, where: str) -> nn.Conv2d:
    """A 1x1 convolution followed by an unpadded average pool as one convolution: the pool's window
    becomes the kernel, each tap weighing 1 / (window size)."""
    kernel, stride, padding = _pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding)
    pointwise = isinstance(conv, nn.Conv2d) and conv.groups == 1 and all(
        v == (1, 1) for v in (conv.kernel_size, conv.stride, conv.dilation)) and conv.padding == (0, 0)
    if not pointwise or padding != (0, 0) or pool.ceil_mode:
        raise NirError(f"{where}: only an unpadded average pool right after a 1x1 convolution folds into it; "
                       "export without folding the pools")
    out = nn.Conv2d(conv.in_channels, conv.out_channels, kernel, stride=stride, bias=True)
    out.weight.data.copy_(conv.weight.detach().expand(-1, -1, *kernel) / (kernel[0] * kernel[1]))
    out.bias.data.copy_(conv.bias.detach())
    return out


def _mean_folded(fc: nn.Linear, side: tuple[int, int]) -> nn.Linear:
    """``fc`` applied to the mean of each channel over a ``side`` feature map, as one affine map of the
    flattened map: every cell of a channel weighs fc's weight / (cells)."""
    cells = side[0] * side[1]
    out = nn.Linear(fc.in_features * cells, fc.out_features)
    out.weight.data.copy_(fc.weight.detach().repeat_interleave(cells, dim=1) / cells)
    out.bias.data.copy_(fc.bias.detach())
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


def _ops(seq: nn.Sequential | None, where: str, fold_pools: bool) -> nn.Sequential:
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
        elif isinstance(m, nn.AvgPool2d) and fold_pools:
            out[-1:] = [_pool_folded(out[-1] if out else None, m, f"{where}.{name}")]
        elif isinstance(m, nn.AvgPool2d):
            out.append(nn.AvgPool2d(_pair(m.kernel_size), _pair(m.stride), _pair(m.padding)))
        elif isinstance(m, nn.MaxPool2d):
            raise NirError(f"{where}.{name}: max-pooling has no NIR equivalent")
        else:
            raise NirError(f"{where}.{name}: {type(m).__name__} has no NIR mapping")
        i += 1
    return nn.Sequential(*out)


class _DeployBlock(nn.Module):
    def __init__(self, block: nn.Module, where: str, fold_pools: bool):
        super().__init__()
        self.branch = _ops(block.branch, f"{where}.branch", fold_pools)
        shortcut = getattr(block, "shortcut", None)
        self.residual = hasattr(block, "interblock")  # a DenseLayer adds no identity
        self.shortcut = _ops(shortcut, f"{where}.shortcut", fold_pools) if shortcut is not None else None
        interblock = getattr(block, "interblock", None)
        self.interblock = _ops(interblock, f"{where}.interblock", fold_pools) if interblock is not None else None

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.branch(z)
        if not self.residual:
            return f, f
        s = f + (z if self.shortcut is None else self.shortcut(z))
        return (s if self.interblock is None else self.interblock(s)), f


class _DeployStage(nn.Module):
    def __init__(self, stage: nn.Module, where: str, fold_pools: bool):
        super().__init__()
        for k, node in enumerate(stage.inputs):
            if node.concat:
                target = f"{where}.blocks.{k}" if k < len(stage.blocks) else f"the output of {where}"
                raise NirError(f"{target} concatenates its inputs; NIR sums the edges into a node and has "
                               "no concatenation")
        self.blocks = nn.ModuleList(_DeployBlock(b, f"{where}.blocks.{k}", fold_pools)
                                    for k, b in enumerate(stage.blocks))
        self.inputs, self.is_chain = stage.inputs, stage.is_chain
        self.transition = (_ops(stage.transition, f"{where}.transition", fold_pools)
                           if stage.transition is not None else None)

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
    """The single-step network of NIR primitives equal to a :class:`SpikingNet` in eval mode
    (``fold_pools``: with no pooling layer, each folded into the linear map next to it)."""

    def __init__(self, model: SpikingNet, feature_side: tuple[int, int], fold_pools: bool = False):
        super().__init__()
        stem = model.stem
        if stem.pool is not None:
            raise NirError("stem.pool: the ImageNet stem's max-pooling has no NIR equivalent; export a network "
                           "built with the `half` or `small` stem (retrain --stem half)")
        self.stem = nn.Sequential(_folded(stem.conv, stem.bn), *([_neuron(stem.sn, "stem.sn")] if stem.sn else []))
        self.stages = nn.ModuleList(_DeployStage(s, f"stages.{i}", fold_pools) for i, s in enumerate(model.stages))
        head = model.head
        pre = [_affine(head.bn), _neuron(head.sn, "head.sn")] if head.bn is not None else []
        pool = [] if fold_pools else [nn.AvgPool2d(feature_side, feature_side, (0, 0))]
        self.head = nn.Sequential(*pre, *pool, nn.Flatten())
        if fold_pools:
            self.fc = _mean_folded(head.fc, feature_side)
        else:
            self.fc = nn.Linear(head.fc.in_features, head.fc.out_features)
            self.fc.load_state_dict(head.fc.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.fc(self.head(h))


def deployable(model: SpikingNet, resolution: int, fold_pools: bool = False) -> DeployNet:
    """``model`` (its weights and BN statistics as they are) as a :class:`DeployNet`."""
    model = model.eval()
    probe = torch.zeros(1, model.in_channels, resolution, resolution)
    with torch.no_grad():
        _, stages = model(probe, return_stages=True)
    functional.reset_net(model)
    return DeployNet(model, tuple(stages[-1].shape[-2:]), fold_pools).eval()


# ---------------------------------------------------------------- the threshold convention
def _float32_step(value: Any, toward: float) -> np.ndarray:
    return np.nextafter(np.asarray(value, dtype=np.float32), np.float32(toward))


def _fire_above(graph) -> None:
    """NIR's neurons fire on v > threshold, SpikingJelly's (so snnas's) on v >= threshold: for a float32
    potential, v >= t exactly when v > t', the float32 right below t. Every threshold becomes t'."""
    for node in graph.nodes.values():
        if hasattr(node, "v_threshold"):
            node.v_threshold = _float32_step(node.v_threshold, -np.inf)


def _fire_at_or_above(module: nn.Module) -> None:
    """The inverse for SpikingJelly's importer, which gives its neurons (firing on v >= t) the file's
    threshold t unchanged: NIR's v > t is v >= the float32 right above t."""
    for m in module.modules():
        if isinstance(m, neuron.BaseNode):
            m.v_threshold = float(_float32_step(m.v_threshold, np.inf))


# ---------------------------------------------------------------- export, read back, run
def export_graph(model: SpikingNet, resolution: int, path: str | os.PathLike | None = None,
                 fold_pools: bool = False):
    """The NIR graph of ``model`` for ``resolution``-pixel images (written to ``path`` when given);
    ``fold_pools``: no pooling node (for readers without AvgPool2d), at the price of H x W times the
    classifier's weights and the pool's window times a pooled 1x1 convolution's."""
    exchange = _requires_nir()
    import nir

    net = deployable(model, resolution, fold_pools)
    example = torch.zeros(1, model.in_channels, resolution, resolution)
    try:
        graph = exchange.export_to_nir(net, example, dt=NIR_DT)
    except NotImplementedError as exc:
        raise NirError(f"NIR export: {exc}") from None
    _fire_above(graph)
    graph.metadata = {"dt": NIR_DT, "timesteps": model.timesteps,
                      "readout": "the mean of the outputs over `timesteps` steps of the same input",
                      "v_threshold": "one float32 step below the trained threshold: NIR fires on v > threshold, "
                                     "the trained network on v >= threshold"}
    if path is not None:
        atomic_write_to_path(path, lambda tmp: nir.write(str(tmp), graph))
    return graph


def run_graph(graph_or_path: Any, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Logits of a NIR graph on images ``x`` with NIR's semantics, through SpikingJelly's importer:
    T steps of the same image, outputs averaged (the readout of a snnas network)."""
    exchange = _requires_nir()
    module = exchange.import_from_nir(graph_or_path if not isinstance(graph_or_path, Path) else str(graph_or_path),
                                      dt=NIR_DT, step_mode="m")
    _fire_at_or_above(module)
    with torch.no_grad():
        out, _ = module(x.unsqueeze(0).expand(timesteps, *x.shape).contiguous())
    return out.mean(0)


def node_summary(graph) -> dict[str, Any]:
    """How many NIR nodes there are, of which types, and which belong to which block (by the
    deployment path)."""
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
    types = Counter(type(node).__name__ for node in graph.nodes.values())
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "dt": NIR_DT,
            "node_types": dict(sorted(types.items())), "by_block": dict(counts)}
