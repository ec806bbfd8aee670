"""The window-recurrent neuron ``gwr``: more than one look at the input within one time step.

At T = 1 an IF neuron sees its input current once and throws away everything below threshold.
The minimum-latency paper (Yao et al., "Training a General Spiking Neural Network with Improved
Efficiency and Minimum Latency", ACML 2023, arXiv 2401.10843) sweeps the feature map window by
window inside the one time step and hands each window's membrane on to the next, fused with the
current input by a projection Ω, so sub-threshold signal gets a second path. This module keeps
that mechanism as a drop-in SpikingJelly neuron on the conv-BN current.

One time step, input current X and state V (both ``[N, C, H, W]``), windows k = 1..G swept
row-major (TL, TR, BL, BR for g = 2), ``crop_k`` a window's slice (all windows have one size)::

    U_k  = crop_k(V) + crop_k(X) + R_k          R_1 = 0,  R_k = λ·Ω(crop_{k-1}(X), U_{k-1})
    S_k  = Θ(U_k − V_th)                          (the surrogate's gradient backward)
    U⁺_k = reset(U_k, S_k)
    S(p) = condense of S_k(p) over the windows k holding p;  V(p) = mean of U⁺_k(p) over them

with Ω(a, b) = 2s·sin(θ·(a/s)·cos(θ·b/s)), s = 2·V_th. U_{k-1} is the pre-reset membrane and is
not detached: the gradient reaches the first window through the chain of carries.

The paper's (its authors' code, ``iverss1/ACML_SNN`` commit 31c9a7c; the paper's equations are not
public): the sweep within one time step in the order TL, TR, BL, BR, 2 x 2 windows, membranes
starting at zero for the first window; Ω = 2·sin(θ·u1·cos(θ·u2)) with θ = π/4 (``proj=sincos``),
or (u1 + u2)/2 (``proj=mean``, the code's CIFAR-100 variant); the carry decay 0.4; dilated windows
of 3/4 the side anchored at the corners (ρ = 1.5 for g = 2) alternating with plain ones between
layers; overlapping outputs averaged (``condense=mean``) or OR-ed (``condense=or``, the CIFAR-100
variant's ``> 0.2`` rule).

Ours (the code's mechanism sits inside a Sequencer block, between two stacked convolution + LIF
layers, followed by an analog MLP; a drop-in neuron has one membrane and no convolutions):
- Ω's first argument is the previous window's input current, its second that window's own
  pre-reset membrane (the code fuses two layers' membranes); ``proj=none`` (R = λ·U_{k-1}) is an
  ablation of ours;
- Ω is scaled by s = 2·V_th, so it is the code's at V_th = 0.5 and the same shape relative to any
  threshold;
- windows on any map: per axis n = g windows (one when the side is below g) of side
  w = min(H, ceil(ρ·H/n)), starting at round(i·(H − w)/(n − 1)) (halves round up), so odd and
  tiny maps (7, 3, 1 px) work and plain windows on an odd side overlap by a line;
- ``condense=or`` (default) takes the maximum forward and passes the mean's gradient backward
  (straight-through), keeping the output binary; the membrane is averaged where windows overlap
  (as the code's recurrent variant does);
- the surrogate is the genotype's Sigmoid, as for IF (not the code's rectangle), θ is fixed;
- ``dil=alt`` dilates every other neuron layer counting in build order, starting plain (the code
  also keeps its last stage plain; here the count alone decides);
- at T > 1 the sweep runs in every step and V carries over between steps as IF's does (the code
  is T = 1 only); the carry R links windows within a step only;
- an input that is not ``[N, C, H, W]`` per step (after a linear layer, say) is one window: the
  neuron is IF there, with nothing to carry.

Cost (:meth:`GWRNode.neuron_mac_ops`): the multiplications of the carry, counted as multiply-
accumulates with each sin/cos as one lookup, per element of every window but the first: 6 for
``sincos`` (4 multiplications, 2 lookups), 1 for ``mean`` and ``none``; none at λ = 0, where the
carry is skipped. Dilated windows cover ρ² = 2.25 times the map. The additions, the reset, the
comparison and the stitch (a maximum; halving where two windows meet) are not counted, as for IF.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable

import torch
from spikingjelly.activation_based import neuron, surrogate

DILATED_SCALE = (3, 2)  # ρ = 1.5 as a fraction: dilated windows 3/4 of the side at g = 2, as in the code


@dataclass(frozen=True)
class Axis:
    """The windows along one axis of a map: where each starts and their common width (made once
    per map size by :func:`axis_windows`, so the derived properties are computed once)."""

    starts: tuple[int, ...]
    width: int
    length: int

    @cached_property
    def tiles(self) -> bool:
        """Windows side by side, no overlap: stitching is placement."""
        return self.starts == tuple(i * self.width for i in range(len(self.starts))) \
            and self.width * len(self.starts) == self.length

    @cached_property
    def overlaps(self) -> tuple[tuple[int, int, int], ...]:
        """(start, length, windows) of every run of positions that more than one window covers."""
        counts = [sum(s <= p < s + self.width for s in self.starts) for p in range(self.length)]
        runs, p = [], 0
        while p < self.length:
            q = p
            while q < self.length and counts[q] == counts[p]:
                q += 1
            if counts[p] > 1:
                runs.append((p, q - p, counts[p]))
            p = q
        return tuple(runs)


@lru_cache(maxsize=512)
def axis_windows(length: int, groups: int, dilated: bool) -> Axis:
    """``groups`` windows along an axis of ``length`` (one where the axis is shorter)."""
    n = groups if length >= groups else 1
    num, den = DILATED_SCALE if dilated else (1, 1)
    width = min(length, -(-num * length // (den * n)))  # ceil(ρ·length / n)
    if n == 1:
        return Axis((0,), width, length)
    # round(i·(length − width)/(n − 1)), halves up, in integers
    starts = tuple((2 * i * (length - width) + (n - 1)) // (2 * (n - 1)) for i in range(n))
    return Axis(starts, width, length)


# ---------------------------------------------------------------- the carry between windows
@dataclass(frozen=True)
class Projection:
    """R = gain(λ, s)·term(a, b, θ/s) from the previous window's input ``a`` and pre-reset
    membrane ``b`` (s = 2·V_th), the multiply-accumulates it costs per element, and the values
    autograd keeps for its backward per element of a carried window (``saves_windows``: and the
    windows of the input it reads, once per element of every window)."""

    term: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    gain: Callable[[float, float], float]
    macs: int
    saved: int = 0
    saves_windows: bool = False


def _sincos(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    return torch.sin(c * (a * torch.cos(c * b)))


PROJECTIONS = {
    # sincos keeps cos's input, its output and sin's input, and reads a (the gathered windows)
    "sincos": Projection(_sincos, lambda lam, scale: 2.0 * scale * lam, 6, saved=3, saves_windows=True),
    "mean": Projection(lambda a, b, c: a + b, lambda lam, scale: 0.5 * lam, 1),
    "none": Projection(lambda a, b, c: b, lambda lam, scale: lam, 1),
}
CONDENSES = {"or": "max", "mean": "mean"}


def saved_values(height: int, width: int, g: int, dilated: bool, proj: str, lam: float) -> float:
    """Values autograd keeps per element of an ``height`` x ``width`` map beyond what IF keeps
    there, for the training-memory estimate: the projection's (above), and where windows overlap
    the extra copies of the membrane the stitch averages. Checked against the tensors autograd
    actually saves (tests/test_size.py)."""
    if lam == 0.0:
        return 0.0
    rows, cols = axis_windows(height, g, dilated), axis_windows(width, g, dilated)
    windows = len(rows.starts) * len(cols.starts)
    area = rows.width * cols.width / (height * width)
    covered, carried = windows * area, (windows - 1) * area  # times the map
    projection = PROJECTIONS[proj]
    return (covered - 1.0) + projection.saved * carried + (covered if projection.saves_windows else 0.0)


# ---------------------------------------------------------------- stitching windows back
def _divide_overlaps(t: torch.Tensor, axis: Axis, dim: int) -> torch.Tensor:
    for start, length, windows in axis.overlaps:
        t.narrow(dim, start, length).div_(windows)
    return t


class _Stitch(torch.autograd.Function):
    """Windows placed along one axis and combined where they overlap by their maximum or mean;
    backward is the mean's gradient either way (the straight-through ``or``)."""

    @staticmethod
    def forward(ctx, reduce: str, axis: Axis, dim: int, *pieces: torch.Tensor) -> torch.Tensor:
        shape = list(pieces[0].shape)
        shape[dim] = axis.length
        out = pieces[0].new_full(shape, -math.inf) if reduce == "max" else pieces[0].new_zeros(shape)
        for start, piece in zip(axis.starts, pieces):
            seg = out.narrow(dim, start, axis.width)
            if reduce == "max":
                torch.maximum(seg, piece, out=seg)
            else:
                seg.add_(piece)
        if reduce != "max":
            _divide_overlaps(out, axis, dim)
        ctx.axis, ctx.dim = axis, dim
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = _divide_overlaps(grad.clone(), ctx.axis, ctx.dim)
        return (None, None, None, *(grad.narrow(ctx.dim, s, ctx.axis.width) for s in ctx.axis.starts))


def _stitch_axis(pieces: tuple[torch.Tensor, ...], axis: Axis, dim: int, reduce: str) -> torch.Tensor:
    if len(pieces) == 1 and axis.width == axis.length:
        return pieces[0]
    if axis.tiles:
        return torch.cat(pieces, dim=dim)
    return _Stitch.apply(reduce, axis, dim, *pieces)


def stitch(windows: torch.Tensor, rows: Axis, cols: Axis, reduce: str) -> torch.Tensor:
    """Windows stacked row-major as ``[G, ..., h, w]`` back on the ``[..., H, W]`` map; where they
    overlap, their maximum (``"max"``) or mean (``"mean"``). Rows and columns are stitched one
    after the other: the windows holding a position are the product of the row and column
    windows holding it, so this is the maximum or mean over all of them."""
    n_rows, n_cols = len(rows.starts), len(cols.starts)
    if n_rows * n_cols == 1:  # one window per axis covers the axis
        return windows[0]
    pieces = windows.unbind(0)
    bands = tuple(_stitch_axis(pieces[r * n_cols:(r + 1) * n_cols], cols, -1, reduce) for r in range(n_rows))
    return _stitch_axis(bands, rows, -2, reduce)


class _Gather(torch.autograd.Function):
    """The windows of a ``[..., H, W]`` map stacked row-major as ``[G, ..., h, w]``. Backward adds
    each window's gradient back into one map (slicing window by window would build a zero map
    per window in backward)."""

    @staticmethod
    def forward(ctx, rows: Axis, cols: Axis, t: torch.Tensor) -> torch.Tensor:
        ctx.rows, ctx.cols, ctx.shape = rows, cols, t.shape
        return torch.stack([t[..., r:r + rows.width, c:c + cols.width] for r in rows.starts for c in cols.starts])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        out = grad.new_zeros(ctx.shape)
        windows = iter(grad.unbind(0))
        for r in ctx.rows.starts:
            for c in ctx.cols.starts:
                out[..., r:r + ctx.rows.width, c:c + ctx.cols.width].add_(next(windows))
        return None, None, out


# ---------------------------------------------------------------- the neuron
class GWRNode(neuron.BaseNode):
    """The group-window recurrent neuron (see the module's docstring for the equations).

    ``dilated`` is this layer's window kind (the genotype's ``dil`` policy resolved by the
    compiler for the layer's place). Step mode ``"m"`` takes ``[T, N, C, H, W]`` (an ``[N, C, H, W]``
    input is one step and comes back with that shape); ``"s"`` takes one step. While
    ``store_v_seq`` is set, a multi-step call keeps ``v_seq`` (the stitched membrane after each
    step) and ``h_seq`` (every window's membrane before firing, ``[T, N, elements]``): the carry
    makes the latter impossible to rebuild from the input and ``v_seq``.
    """

    def __init__(self, g: int = 2, dilated: bool = False, lam: float = 0.4, theta: float = math.pi / 4,
                 proj: str = "sincos", condense: str = "or", v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase | None = None, detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False, layer_index: int | None = None):
        if proj not in PROJECTIONS:
            raise ValueError(f"proj must be one of {', '.join(PROJECTIONS)}, got {proj!r}")
        if condense not in CONDENSES:
            raise ValueError(f"condense must be one of {', '.join(CONDENSES)}, got {condense!r}")
        if isinstance(g, bool) or not isinstance(g, int) or g < 1:
            raise ValueError(f"g must be a positive integer, got {g!r}")
        super().__init__(v_threshold, v_reset, surrogate_function or surrogate.Sigmoid(), detach_reset,
                         step_mode=step_mode, store_v_seq=store_v_seq)
        self.g, self.dilated, self.lam, self.theta = g, bool(dilated), float(lam), float(theta)
        self.proj, self.condense, self.layer_index = proj, condense, layer_index
        self.h_seq = None

    def extra_repr(self) -> str:
        return (f"g={self.g}, dilated={self.dilated}, lam={self.lam}, theta={self.theta:.4g}, proj={self.proj}, "
                f"condense={self.condense}, " + super().extra_repr())

    def reset(self) -> None:
        super().reset()
        self.h_seq = None

    # ----- one time step ----------------------------------------------------------------------
    def _fire(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes and the membrane after reset (SpikingJelly's reset rules)."""
        spike = self.surrogate_function(u - self.v_threshold)
        if self.v_reset is None:
            return spike, self.apply_soft_reset(u, spike.detach() if self.detach_reset else spike, self.v_threshold)
        if self.detach_reset:  # (1 - S)·U + S·v_reset with S detached, in one pass
            return spike, torch.where(spike.detach().bool(), self.v_reset, u)
        return spike, self.apply_hard_reset(u, spike, self.v_reset)

    def _windows(self, x: torch.Tensor) -> tuple[Axis, Axis] | None:
        if x.dim() != 4:
            return None
        return axis_windows(x.shape[-2], self.g, self.dilated), axis_windows(x.shape[-1], self.g, self.dilated)

    def _step(self, x: torch.Tensor, v: torch.Tensor | float, record: bool):
        """(spikes, next state, membranes before firing or None) of one time step; ``v`` is the
        state, or the float it rests at after a reset (no map of it is made)."""
        charged = v + x if isinstance(v, torch.Tensor) or v != 0.0 else x
        grid = self._windows(x)
        if grid is None:  # not a map: one window, IF
            spike, v = self._fire(charged)
            return spike, v, (charged.flatten(1) if record else None)
        rows, cols = grid
        projection = PROJECTIONS[self.proj] if self.lam != 0.0 else None
        scale = 2.0 * self.v_threshold
        gain = projection.gain(self.lam, scale) if projection is not None else 0.0
        # Only the carry is sequential: each window's membrane needs the one before it. Firing,
        # reset and stitching then run once over all windows stacked.
        charged_w = _Gather.apply(rows, cols, charged).unbind(0)
        inputs_w = charged_w if charged is x else _Gather.apply(rows, cols, x).unbind(0)
        membranes = [charged_w[0]]
        for k in range(1, len(charged_w)):
            u = charged_w[k]
            if projection is not None:
                u = torch.add(u, projection.term(inputs_w[k - 1], membranes[-1], self.theta / scale), alpha=gain)
            membranes.append(u)
        u = membranes[0].unsqueeze(0) if len(membranes) == 1 else torch.stack(membranes)
        spike, after = self._fire(u)
        before = u.transpose(0, 1).flatten(1) if record else None
        return stitch(spike, rows, cols, CONDENSES[self.condense]), stitch(after, rows, cols, "mean"), before

    # ----- SpikingJelly's interfaces ----------------------------------------------------------
    def single_step_functional_forward(self, inputs, states):
        spike, v, _ = self._step(inputs[0], states[0], record=False)
        return (spike,), (v, *states[1:])

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        one_step = x_seq.dim() == 4  # [N, C, H, W]: T = 1
        if one_step:
            x_seq = x_seq.unsqueeze(0)
        v = self.v
        if isinstance(v, torch.Tensor):
            (v,) = self.materialize_states((x_seq,), (v,), "m")
        record = self.store_v_seq
        spikes, vs, hs = [], [], []
        for x in x_seq:
            spike, v, h = self._step(x, v, record)
            spikes.append(spike)
            vs.append(v)
            hs.append(h)
        self.v = v
        if record:
            self.v_seq, self.h_seq = torch.stack(vs), torch.stack(hs)
        if one_step:
            return spikes[0]
        return spikes[0].unsqueeze(0) if len(spikes) == 1 else torch.stack(spikes)

    # ----- cost ---------------------------------------------------------------------------------
    def neuron_mac_ops(self, input_shape: torch.Size | tuple[int, ...]) -> int:
        """Multiply-accumulates of the carry on one call with input of ``input_shape`` (all images
        and time steps of the call; see the module's docstring for what counts)."""
        shape = tuple(input_shape)
        if self.step_mode == "m" and len(shape) == 5:
            steps, shape = shape[0], shape[1:]
        else:
            steps = 1
        if self.lam == 0.0 or len(shape) != 4:
            return 0
        n, c, h, w = shape
        rows, cols = axis_windows(h, self.g, self.dilated), axis_windows(w, self.g, self.dilated)
        carried = len(rows.starts) * len(cols.starts) - 1
        return steps * n * c * rows.width * cols.width * carried * PROJECTIONS[self.proj].macs
