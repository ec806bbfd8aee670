"""Operation counts and energy with SpikingJelly's ``op_counter``.

One forward pass runs under ``op_counter.DispatchCounterMode``, which sees every convolution and
matrix product at the ATen level, with the module it ran in. What each one costs depends on what
it *receives*, checked on the actual tensor, not assumed from the architecture:
- event-valued input (binary spikes, or non-negative integer spike counts such as the sums that
  SEW blocks pass on): synaptic operations (SOPs), one accumulate per input event and weight it
  reaches; an input of k counts k events. For binary spikes this is exactly SpikingJelly's
  ``SynOpCounter`` rule (weight uses of the non-zero inputs, padding respected).
- analog input (the image at the stem, the stream of pre-activation blocks, the pooled features
  at the head): dense multiply-accumulates (MACs).
BatchNorm, additions, pooling and IF/LIF updates are not counted: BN folds into the weights or
thresholds at inference, and the rest is small beside the synaptic work, the usual convention of
SNN energy estimates. A neuron that multiplies analog values, though, is not accumulate-only: a
neuron module with a ``neuron_mac_ops(input_shape)`` method (the window-recurrent ``gwr`` neuron,
whose carry between windows multiplies membranes) reports its own multiply-accumulates per call,
and they count as ``neuron_mac_ops``. Energy = E_MAC * (MACs + neuron MACs) + E_AC * SOPs with the
constants of :mod:`snnas.metrics.energy`.

Reported per image: ``sops``, ``mac_ops`` and ``neuron_mac_ops`` summed over the T time steps;
``macs`` is the dense, architecture-only count (every conv/linear as if fed analog values, one time
step; the stem, which runs once on the image, once), the figure comparable with an ANN's.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based.op_counter import BaseCounter, DispatchCounterMode

from snnas.metrics.energy import E_AC_PJ, E_MAC_PJ, energy_mj
from snnas.metrics.layers import check_batch, diagnostic_mode

aten = torch.ops.aten


def holds_events(x: torch.Tensor) -> bool:
    """True for binary spikes and for non-negative integer spike counts."""
    if x.dtype == torch.bool:
        return True
    if not x.is_floating_point():
        return bool((x >= 0).all())
    return bool(((x >= 0) & (x == torch.round(x))).all())


def _conv_parts(args):
    x, w = args[0], args[1]
    stride, padding, dilation, transposed, output_padding, groups = args[3:9]
    return x, w, stride, padding, dilation, transposed, output_padding, groups


def _matmul_operands(func, args):
    return (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])


def _conv_sops(args, kwargs, out) -> int:
    x, w, stride, padding, dilation, transposed, output_padding, groups = _conv_parts(args)
    if transposed or not holds_events(x):
        return 0
    # Each input event reaches every weight whose window covers it: convolving the events with a
    # kernel of ones counts, per output position, the events in its window (value-weighted).
    # float32 holds these small integer counts exactly; the total is summed in float64
    ones = torch.ones((groups, w.shape[1], *w.shape[2:]), dtype=torch.float32, device=x.device)
    occupancy = aten.convolution.default(x.to(torch.float32), ones, None, stride, padding, dilation,
                                         False, output_padding, groups)
    return int(round(float(occupancy.sum(dtype=torch.float64)))) * (w.shape[0] // groups)


def _conv_macs(args, kwargs, out) -> int:
    x, w, transposed = args[0], args[1], args[6]
    if transposed:  # every input value meets every weight of its group once
        return x.numel() * prod(w.shape[1:])
    return 0 if holds_events(x) else out.numel() * prod(w.shape[1:])


def _conv_dense_macs_per_sample(args, kwargs, out) -> int:
    x, w, transposed = args[0], args[1], args[6]
    return (x[0] if transposed else out[0]).numel() * prod(w.shape[1:])


def _make_matmul_rule(func, kind: str):
    """Linear layers reach ATen as ``input @ weight.T``: the first operand is the activation."""
    def rule(args, kwargs, out):
        a, b = _matmul_operands(func, args)
        m, k = a.shape
        n = b.shape[1]
        if kind == "dense":
            return k * n  # per row, and a row is one sample (image x time step)
        events = holds_events(a)
        if kind == "sops":
            return int(round(float(a.sum(dtype=torch.float64)))) * n if events else 0
        return 0 if events else m * k * n
    return rule


class _RuleCounter(BaseCounter):
    """A counter over the convolution and matmul ATen ops with the given rules (floats allowed)."""

    def __init__(self, rules: dict[Any, Any]):
        super().__init__()
        self.rules = dict(rules)
        self.records = defaultdict(lambda: defaultdict(float))

    def count(self, func, args, kwargs, out, active_modules=None, parent_names=None):
        return self.rules[func](args, kwargs, out)


def _counter(kind: str) -> _RuleCounter:
    conv = {"sops": _conv_sops, "macs": _conv_macs, "dense": _conv_dense_macs_per_sample}[kind]
    rules = {aten.convolution.default: conv}
    for func in (aten.mm.default, aten.addmm.default):
        rules[func] = _make_matmul_rule(func, kind)
    return _RuleCounter(rules)


@dataclass(frozen=True)
class OpsReport:
    """Parameters, operations and energy per image. ``by_layer`` maps module name to
    ``{"sops", "mac_ops", "macs"}`` (same units as the totals); ``neuron_by_layer`` maps each
    neuron that multiplies to its ``neuron_mac_ops``. ``mac_ops`` are the synapses' (conv/linear on
    analog input), ``neuron_mac_ops`` the neurons' own; the energy counts both."""

    params: int
    macs: float
    sops: float
    mac_ops: float
    timesteps: int
    by_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ
    neuron_mac_ops: float = 0.0
    neuron_by_layer: dict[str, float] = field(default_factory=dict)

    @property
    def energy_mj(self) -> float:
        return energy_mj(self.mac_ops + self.neuron_mac_ops, self.sops, self.e_mac_pj, self.e_ac_pj)

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs, "sops": self.sops, "mac_ops": self.mac_ops,
                "neuron_mac_ops": self.neuron_mac_ops, "energy_mj": self.energy_mj,
                "energy_constants_pj": {"mac": self.e_mac_pj, "ac": self.e_ac_pj}}


def _leaf_modules(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]


def _per_layer(model: nn.Module, counters: dict[str, _RuleCounter], calls: dict[str, int],
               images: int) -> dict[str, dict[str, float]]:
    """Per conv/linear module: SOPs and MACs per image, and its dense MACs per sample and call
    (a module run once per time step adds one per-sample count per call)."""
    root = type(model).__name__
    out: dict[str, dict[str, float]] = {}
    for name in _leaf_modules(model):
        scope = f"{root}.{name}"
        values = {kind: float(sum(c.records[scope].values())) if scope in c.records else 0.0
                  for kind, c in counters.items()}
        if any(values.values()):
            out[name] = {"sops": values["sops"] / images, "mac_ops": values["macs"] / images,
                         "macs": values["dense"] / max(calls.get(name, 1), 1)}
    return out


def count_ops(model: nn.Module, x: torch.Tensor, bn_stats: str = "batch") -> OpsReport:
    """Params, MACs, SOPs and energy of ``model`` on the image batch ``x`` (one forward pass)."""
    check_batch(x)
    counters = {"sops": _counter("sops"), "macs": _counter("macs"), "dense": _counter("dense")}
    calls, neurons = _CallCounter(model), _NeuronMacs(model)
    try:
        with diagnostic_mode(model, bn_stats), DispatchCounterMode(list(counters.values())):
            model(x)
    finally:
        calls.close()
        neurons.close()
    images = x.shape[0]
    by_layer = _per_layer(model, counters, calls.counts, images)
    total = {kind: float(sum(c.records["Global"].values())) for kind, c in counters.items()}
    # ops outside any leaf module (a functional conv in a forward) count once per call
    outside = total["dense"] - sum(sum(counters["dense"].records[f"{type(model).__name__}.{n}"].values())
                                   for n in by_layer)
    return OpsReport(params=sum(p.numel() for p in model.parameters()),
                     macs=sum(v["macs"] for v in by_layer.values()) + outside,
                     sops=total["sops"] / images, mac_ops=total["macs"] / images,
                     timesteps=int(getattr(model, "timesteps", 1)), by_layer=by_layer,
                     neuron_mac_ops=sum(neurons.macs.values()) / images,
                     neuron_by_layer={name: n / images for name, n in neurons.macs.items()})


class _CallCounter:
    """How many times each leaf module ran (a module called once per time step runs T times)."""

    def __init__(self, model: nn.Module):
        self.counts: dict[str, int] = {}
        modules = dict(model.named_modules())
        self._handles = [modules[name].register_forward_hook(self._make(name)) for name in _leaf_modules(model)]

    def _make(self, name: str):
        def hook(module, args, output) -> None:
            self.counts[name] = self.counts.get(name, 0) + 1
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class _NeuronMacs:
    """Each multiplying neuron's own multiply-accumulates over the pass, from its actual inputs."""

    def __init__(self, model: nn.Module):
        self.macs: dict[str, float] = {}
        self._handles = [m.register_forward_hook(self._make(name)) for name, m in model.named_modules()
                         if callable(getattr(m, "neuron_mac_ops", None))]

    def _make(self, name: str):
        def hook(module, args, output) -> None:
            self.macs[name] = self.macs.get(name, 0.0) + float(module.neuron_mac_ops(args[0].shape))
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
