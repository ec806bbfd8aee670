"""snnas: architecture search over spiking-network topologies.

Everything here loads on first use: ``import snnas.study.workers`` (the study plumbing) must not
pull in genotypes or torch. The genotype layer and presets import without torch; ``build_model``
and the checkpoint helpers load it.
"""
from __future__ import annotations

from snnas.errors import GenotypeError, SnnasError

__all__ = ["Genotype", "GenotypeError", "SnnasError", "build_model", "get_preset", "list_presets",
           "resolve_genotype", "load_model", "save_model", "count_parameters"]

_LAZY = {
    "Genotype": "snnas.genotype",
    "get_preset": "snnas.presets",
    "list_presets": "snnas.presets",
    "build_model": "snnas.compiler",
    "resolve_genotype": "snnas.compiler",
    "count_parameters": "snnas.compiler",
    "load_model": "snnas.checkpoint",
    "save_model": "snnas.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'snnas' has no attribute {name!r}")
