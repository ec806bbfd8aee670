"""How much memory a network will ask for, known before a byte of it is allocated.

A width, depth or resolution typed one digit too long asks for tens of gigabytes; the allocator's
traceback says nothing about which setting did it. These estimates come from the genotype's plan
alone (no tensors): parameters exactly enough to tell megabytes from gigabytes, training
activations as the convolution outputs autograd keeps, times T and the batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from snnas.errors import SnnasError
from snnas.genotype import Genotype
from snnas.genotype.vocabulary import DENSE_BOTTLENECK

BYTES_PER_VALUE = 4  # float32
# Each convolution's output is kept by autograd several times over: the conv output, the BN
# output, the neuron's membrane and spikes (and the surrogate's input).
SAVED_PER_CONV_OUTPUT = 5
MEMORY_SHARE = 0.6  # refuse what would take more than this share of the machine's memory


class SizeError(SnnasError):
    """A network or batch that would not fit in memory (the message names the size and the way out)."""


@dataclass(frozen=True)
class SizeEstimate:
    params: int
    activation_bytes: int  # training, for one batch
    copies: int = 4  # of the weights: training holds them, their gradients, momentum and a checkpoint copy

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_PER_VALUE * self.copies

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes


def _scaled(width: int, width_mult: float) -> int:
    return max(1, int(round(width * width_mult)))


def estimate(genotype: Genotype, *, in_channels: int = 3, num_classes: int = 1000, width_mult: float = 1.0,
             resolution: int = 224, timesteps: int = 1, batch_size: int = 1) -> SizeEstimate:
    """Parameters (the convolutions and the classifier, to a few percent) and training activations."""
    from snnas.compiler.network import scale_widths

    g = scale_widths(genotype, width_mult) if width_mult != 1.0 else genotype
    side = resolution // 2 if g.stem in ("imagenet", "half") else resolution
    if g.stem == "imagenet":
        side //= 2
    kernel = 49 if g.stem == "imagenet" else 9
    params = in_channels * g.stem_width * kernel
    values = g.stem_width * side * side  # per image and time step
    for stage, plan in zip(g.stages, g.plans()):
        for block in plan.blocks:
            side_out = max(1, side // block.stride)
            if stage.kind == "bottleneck":
                convs = [(block.in_channels, block.mid_channels, 1), (block.mid_channels, block.mid_channels, 9),
                         (block.mid_channels, block.out_channels, 1)]
            elif stage.kind == "dense":
                convs = [(block.in_channels, DENSE_BOTTLENECK * block.out_channels, 1),
                         (DENSE_BOTTLENECK * block.out_channels, block.out_channels, 9)]
            else:
                convs = [(block.in_channels, block.mid_channels, 9), (block.mid_channels, block.out_channels, 9)]
            if block.projection:
                convs.append((block.in_channels, block.out_channels, 1))
            params += sum(cin * cout * k for cin, cout, k in convs)
            values += sum(cout for _, cout, _ in convs) * side_out * side_out
            side = side_out
        side = max(1, side // max(1, plan.downsample // max(1, stage.stride)))
    params += plan.out_channels * num_classes if g.stages else 0
    activations = values * SAVED_PER_CONV_OUTPUT * BYTES_PER_VALUE * timesteps * batch_size
    return SizeEstimate(params=int(params), activation_bytes=int(activations))


def machine_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(size: SizeEstimate, what: str, limit_bytes: int | None = None, allow_flag: str = "--allow-large") -> None:
    """Raise :class:`SizeError` when ``size`` would take more than ``MEMORY_SHARE`` of ``limit_bytes``
    (default: this machine's memory)."""
    limit = limit_bytes if limit_bytes is not None else machine_memory_bytes()
    if limit is None or size.total_bytes <= MEMORY_SHARE * limit:
        return
    parts = f"{size.params:,} parameters" + (f", {_gib(size.activation_bytes)} of training activations per batch"
                                             if size.activation_bytes else "")
    raise SizeError(f"{what} would need about {_gib(size.total_bytes)} ({parts}), more than "
                    f"{MEMORY_SHARE:.0%} of the {_gib(limit)} here; shrink the width, depth, resolution, T or "
                    f"batch, or pass {allow_flag} to try anyway")
