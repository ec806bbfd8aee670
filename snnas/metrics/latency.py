"""Inference latency per image: the cost a user on this machine feels, beside the energy estimate.

The energy estimate prices arithmetic on neuromorphic hardware; on a CPU or a GPU a spiking
network pays for every dense convolution whatever its spikes, so a network with half the SOPs can
take as long to run. Both are recorded so a search's Pareto front can be read either way.
Latency is the median over ``repeats`` timed passes of one image (batch 1, inference BN, the
model's own T), after ``warmup`` untimed passes; the threads in use are reported with it, since
the figure is only comparable between runs with the same count.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from snnas.metrics.layers import check_batch, diagnostic_mode


@dataclass(frozen=True)
class Latency:
    ms_per_image: float
    threads: int
    repeats: int


def inference_latency(model: nn.Module, x: torch.Tensor, repeats: int = 10, warmup: int = 2) -> Latency:
    """Median wall time of ``model`` on the first image of ``x`` (one image a pass)."""
    check_batch(x)
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup at least 0")
    one = x[:1]
    device = next((p.device for p in model.parameters()), one.device)
    one = one.to(device)
    times = []
    with diagnostic_mode(model, "running"):
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(one)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return Latency(ms_per_image=1e3 * statistics.median(times), threads=torch.get_num_threads(), repeats=repeats)
