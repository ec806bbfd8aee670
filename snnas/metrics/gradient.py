"""Gradient stability, as the DANet paper measures it (Fig. 8 and 10, Tables IV and V).

The paper's Proposition 2 follows every gradient path through the factor of Eq. (7),

    dS_t / dV_t = Theta'(V_t - V_th),

the surrogate derivative of the firing function at the membrane potential *before* firing
(V in Eq. (1); U is the potential after reset). Every spatial and temporal gradient term is
multiplied by it once per layer it crosses, so the paper takes its amplitude as a layer's gradient
stability ("the closer to 1, the more stable") and the product over the layers as the network's
(Tables IV/V apply the chain rule to the per-layer values).

What is computed here, per spiking layer: the mean of |Theta'(V - V_th)| over all neurons, time
steps and images of the batch, where
- V is rebuilt exactly from the layer's input X (recorded by a forward pre-hook) and SpikingJelly's
  own post-reset trace U (``store_v_seq``): V_t = charge(U_{t-1}, X_t), with U_{-1} the state the
  model reset the neuron to. Charge is the neuron's own equation (IF: U + X; LIF:
  SpikingJelly's ``functional.lif_charge``). A neuron whose V cannot be rebuilt from X and U
  records V itself as ``h_seq`` while ``store_v_seq`` is set: the window-recurrent ``gwr`` neuron,
  whose windows carry membranes to each other, gives every window's V (its overlaps counted once
  per window, as each window fires on its own).
- Theta' is the neuron's own ``surrogate_function`` differentiated by autograd, so any surrogate
  works; for the Sigmoid of the paper it is alpha * sig(alpha z) * (1 - sig(alpha z)), at most
  alpha / 4 (= 1 for alpha = 4).
Only a forward pass is needed: the quantity is the surrogate derivative itself, not a gradient
that depends on a loss, so it needs no labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron
from spikingjelly.activation_based.functional import lif_charge

from snnas.metrics.layers import SpikingLayer, check_batch, diagnostic_mode, require_multi_step, spiking_modules


@dataclass(frozen=True)
class LayerGradStability:
    layer: SpikingLayer
    value: float


@dataclass(frozen=True)
class GradStabilityReport:
    """Mean surrogate-derivative amplitude per spiking layer, in execution order."""

    layers: tuple[LayerGradStability, ...]

    @property
    def values(self) -> dict[str, float]:
        return {e.layer.name: e.value for e in self.layers}

    @property
    def log10_product(self) -> float:
        """log10 of the product over layers; stays finite where the product would underflow."""
        return sum(math.log10(e.value) if e.value > 0 else -math.inf for e in self.layers)

    @property
    def product(self) -> float:
        return 10.0 ** self.log10_product if self.layers else 1.0

    @property
    def geometric_mean(self) -> float:
        """The per-layer value whose L-th power is the product: compares nets of different depth."""
        return 10.0 ** (self.log10_product / len(self.layers)) if self.layers else 1.0

    def to_dict(self) -> dict:
        return {"grad_stability": self.values, "grad_stability_product": self.product,
                "grad_stability_log10_product": self.log10_product,
                "grad_stability_geometric_mean": self.geometric_mean}


def membrane_before_firing(node: neuron.BaseNode, x_seq: torch.Tensor, v_start, u_seq: torch.Tensor) -> torch.Tensor:
    """V_t (potential after charging, before firing) for t = 0..T-1 from the input sequence,
    the starting state and the post-reset trace U_t (or as the neuron recorded it, ``h_seq``)."""
    recorded = getattr(node, "h_seq", None)
    if isinstance(recorded, torch.Tensor):
        return recorded.to(x_seq.dtype)
    if isinstance(v_start, torch.Tensor) and v_start.shape == x_seq.shape[1:]:
        v0 = v_start.to(x_seq.dtype)
    else:  # a float, or state left from a batch of another shape, which the neuron itself discards
        rest = float(v_start) if not isinstance(v_start, torch.Tensor) else (node.v_reset if node.v_reset is not None else 0.0)
        v0 = torch.full_like(x_seq[0], rest)
    u_prev = torch.cat([v0.unsqueeze(0), u_seq[:-1].to(x_seq.dtype)], dim=0)
    if isinstance(node, neuron.LIFNode):
        return lif_charge(x_seq, u_prev, node.tau, node.decay_input, node.v_reset)
    if isinstance(node, neuron.IFNode):
        return u_prev + x_seq
    raise TypeError(f"gradient stability knows the charge equation of IFNode and LIFNode, not {type(node).__name__} "
                    "(which records no h_seq)")


def surrogate_derivative(node: neuron.BaseNode, z: torch.Tensor) -> torch.Tensor:
    """Theta'(z) of the neuron's own surrogate function, elementwise."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(node.surrogate_function(z).sum(), z)
    return grad


class GradStabilityRecorder:
    """Hooks that turn each neuron call into the sum and count of Theta'(V - V_th)."""

    def __init__(self, model: nn.Module):
        self._modules = require_multi_step(spiking_modules(model), "gradient stability")
        self._pending: dict[nn.Module, tuple[torch.Tensor, object]] = {}
        self._sums: dict[str, list[float]] = {}
        self._stored: list[tuple[neuron.BaseNode, bool]] = []
        self._handles = []
        for layer, node in self._modules:
            self._stored.append((node, node.store_v_seq))
            node.store_v_seq = True
            self._handles.append(node.register_forward_pre_hook(self._before))
            self._handles.append(node.register_forward_hook(self._make_after(layer)))

    def _before(self, node: nn.Module, args) -> None:
        v = node.v
        self._pending[node] = (args[0], v.detach().clone() if isinstance(v, torch.Tensor) else v)

    def _make_after(self, layer: SpikingLayer):
        def after(node: nn.Module, args, output) -> None:
            x_seq, v_start = self._pending.pop(node)
            v = membrane_before_firing(node, x_seq.detach(), v_start, node.v_seq.detach())
            grad = surrogate_derivative(node, v - node.v_threshold).abs()
            acc = self._sums.setdefault(layer.name, [0.0, 0])
            acc[0] += float(grad.sum(dtype=torch.float64))
            acc[1] += grad.numel()
            node.v_seq = None  # the traces have served; do not keep them alive
            if getattr(node, "h_seq", None) is not None:
                node.h_seq = None
        return after

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for node, flag in self._stored:
            node.store_v_seq = flag

    def report(self) -> GradStabilityReport:
        layers = {layer.name: layer for layer, _ in self._modules}
        return GradStabilityReport(tuple(LayerGradStability(layers[name], s / n if n else 0.0)
                                         for name, (s, n) in self._sums.items()))


def gradient_stability(model: nn.Module, x: torch.Tensor, bn_stats: str = "batch") -> GradStabilityReport:
    """Per-layer mean |Theta'(V - V_th)| and their product on the image batch ``x`` (one forward pass)."""
    check_batch(x)
    recorder = GradStabilityRecorder(model)
    try:
        with diagnostic_mode(model, bn_stats):
            model(x)
    finally:
        recorder.close()
    return recorder.report()
