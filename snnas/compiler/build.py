"""``build_model``: the one entry point from any genotype spec to a network."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from snnas.compiler.network import SpikingNet
from snnas.compiler.size import SizeError, SizeEstimate, check_fits, describe_size, estimate
from snnas.errors import GenotypeError, excerpt
from snnas.files import read_text
from snnas.genotype import Genotype


def resolve_genotype(spec: "Genotype | str | Path") -> Genotype:
    """A Genotype from a Genotype, a preset name, a genotype string or a genotype JSON file."""
    from snnas.presets import PRESETS, get_preset

    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(".json")):
        return Genotype.from_json(read_text(spec, "genotype file", GenotypeError))
    if not isinstance(spec, str):
        raise GenotypeError(f"genotype: expected a preset name, genotype string or JSON path, got {type(spec).__name__}")
    if spec in PRESETS:
        return get_preset(spec)
    if "|" in spec:
        return Genotype.from_str(spec)
    raise GenotypeError(f"genotype: {excerpt(spec)} is not a preset name, a genotype string or a .json file "
                        "(see `snnas show --list` for presets)")


def build_model(spec: "Genotype | str | Path", num_classes: int = 1000, in_channels: int = 3, timesteps: int = 1,
                width_mult: float = 1.0, allow_large: bool = False) -> SpikingNet:
    """The network of a genotype; one whose weights alone would not fit in memory is refused with
    a :class:`~snnas.compiler.size.SizeError` before anything is allocated (``allow_large`` skips it)."""
    g = resolve_genotype(spec)
    for name, value, lo in (("num_classes", num_classes, 1), ("in_channels", in_channels, 1), ("timesteps", timesteps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise GenotypeError(f"{name}: {value!r} is not allowed; expected an integer >= {lo}")
    if not isinstance(width_mult, (int, float)) or isinstance(width_mult, bool) or not 0 < width_mult <= 16:
        raise GenotypeError(f"width_mult: {width_mult!r} is not allowed; expected a number in (0, 16]")
    weights = SizeEstimate(estimate(g, in_channels=in_channels, num_classes=num_classes, width_mult=float(width_mult),
                                    batch_size=0).params, 0, copies=1)
    if not allow_large:
        check_fits(weights, f"network {excerpt(g.to_str())}")
    try:
        return SpikingNet(g, num_classes=num_classes, in_channels=in_channels, timesteps=timesteps,
                          width_mult=float(width_mult))
    except (MemoryError, RuntimeError) as exc:  # a limit the check could not see (or --allow-large)
        if not is_allocation_failure(exc):
            raise
        raise SizeError(f"network {excerpt(g.to_str())}: allocating its weights failed, {describe_size(weights)}; "
                        "shrink the width, depth or classes") from None


def is_allocation_failure(exc: BaseException) -> bool:
    """The allocator's refusal: ``MemoryError`` or torch's RuntimeError about allocating memory."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
