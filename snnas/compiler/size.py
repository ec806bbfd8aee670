"""How much memory a network will ask for, known before a byte of it is allocated.

A width, depth or resolution typed one digit too long asks for tens of gigabytes; the allocator's
traceback says nothing about which setting did it. These estimates come from the genotype's plan
alone (no tensors): parameters exactly enough to tell megabytes from gigabytes, training
activations as the convolution outputs autograd keeps, times T and the batch.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from snnas.compiler.factories import GWR_DILATED
from snnas.compiler.gwr import saved_values
from snnas.errors import SnnasError
from snnas.genotype import Genotype
from snnas.genotype.schema import Neuron
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


def neuron_saved_values(spec: Neuron, side: int) -> float:
    """Values the neuron keeps per conv output on a ``side`` x ``side`` map beyond IF's (whose share
    ``SAVED_PER_CONV_OUTPUT`` holds): LIF none, gwr its windows' (averaged over its dilation policy's
    alternation)."""
    if spec.kind != "gwr":
        return 0.0
    policy = [GWR_DILATED[spec.dil](index) for index in (0, 1)]
    return sum(saved_values(side, side, spec.g, dilated, spec.proj, spec.lam) for dilated in policy) / len(policy)


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
    extra = values * neuron_saved_values(g.neuron, side)  # the neuron's own, beyond IF's
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
            outputs = sum(cout for _, cout, _ in convs) * side_out * side_out
            values += outputs
            extra += outputs * neuron_saved_values(g.neuron, side_out)
            side = side_out
        side = max(1, side // max(1, plan.downsample // max(1, stage.stride)))
    params += plan.out_channels * num_classes if g.stages else 0
    activations = (values * SAVED_PER_CONV_OUTPUT + extra) * BYTES_PER_VALUE * timesteps * batch_size
    return SizeEstimate(params=int(params), activation_bytes=int(activations))


def machine_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2) means no limit


def cgroup_memory_bytes(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``),
    the tightest along its path; None when there is none. A container's limit is far below the
    machine's RAM that ``sysconf`` reports, and the kernel kills what crosses it without a word."""
    try:
        lines = proc_cgroup.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = (root / "memory" if (root / "memory").is_dir() else root), "memory.limit_in_bytes"
        else:
            continue
        here = base / path.lstrip("/")
        for folder in (here, *here.parents):
            if folder == base.parent:
                break
            value = _read_int(folder / name)
            if value is not None and value < 2**60:  # v1 writes "no limit" as a huge number
                limits.append(value)
    return min(limits) if limits else None


def address_space_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """What ``ulimit -v`` still leaves this process: the soft RLIMIT_AS less its present virtual
    size (a CUDA build of torch maps gigabytes of address space before the first tensor)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    try:
        for line in status.read_text(encoding="ascii").splitlines():
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    return max(0, soft - used)


def memory_limit() -> tuple[int, str] | None:
    """The tightest of the limits this process has, with the words that name it."""
    found = [(v, what) for v, what in ((machine_memory_bytes(), "this machine's memory"),
                                       (cgroup_memory_bytes(), "this process's cgroup memory limit"),
                                       (address_space_bytes(), "the address space `ulimit -v` leaves this process"))
             if v is not None]
    return min(found) if found else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def describe_size(size: SizeEstimate) -> str:
    parts = f"{size.params:,} parameters" + (f", {_gib(size.activation_bytes)} of training activations per batch"
                                             if size.activation_bytes else "")
    return f"about {_gib(size.total_bytes)} ({parts})"


def check_fits(size: SizeEstimate, what: str, limit_bytes: int | None = None, allow_flag: str = "--allow-large") -> None:
    """Raise :class:`SizeError` when ``size`` would take more than ``MEMORY_SHARE`` of ``limit_bytes``
    (default: the tightest of the machine's memory, the cgroup's limit and ``ulimit -v``)."""
    limit = (limit_bytes, "memory of the device") if limit_bytes is not None else memory_limit()
    if limit is None or size.total_bytes <= MEMORY_SHARE * limit[0]:
        return
    raise SizeError(f"{what} would need {describe_size(size)}, more than "
                    f"{MEMORY_SHARE:.0%} of the {_gib(limit[0])} of {limit[1]}; shrink the width, depth, resolution, T or "
                    f"batch, or pass {allow_flag} to try anyway")
