"""Folding genotypes that build the same network, so a search never pays twice for one network.

What folds (each provably the same function with the same parameters):
- a stage whose blocks are all identity-residual (no interblock module: sew, pa_a, pa_b and
  other combinations) wired ``dense_add`` computes exactly its ``chain`` (the paper's Eq. 10,
  Fig. 4(a)): it becomes ``chain``;
- a one-block stage wired ``dense_add`` is its ``chain``;
- an explicit edge list equal to a named pattern takes that pattern's name (then folds as above);
- the membrane time constant of an IF or gwr neuron is unused: it is set to the default.
Nothing else folds: ``dense_add`` over blocks with an interblock module (DANet-C, -D) is a
different network, and tdBN differs from BN by its initialisation. A ``gwr`` neuron without its
carry (``lam=0``, or ``g=1``: one window) fires as IF does, but its code path is another one (the
window sweep and the stitch cost time), so it stays its own network: the control of a comparison.
"""
from __future__ import annotations

from dataclasses import replace

from snnas.genotype import vocabulary as V
from snnas.genotype.schema import Genotype, Stage
from snnas.genotype.topology import expand_edges


def _canonical_stage(stage: Stage) -> Stage:
    if stage.connect == "edges":
        for name in ("chain", "dense_add", "dense_concat"):
            if tuple(sorted(expand_edges(name, stage.depth), key=lambda e: (e.dst, e.src))) == stage.edges:
                if name == "dense_concat" and stage.stride != 1:
                    break
                stage = replace(stage, connect=name, edges=())
                break
    if stage.connect == "dense_add" and (stage.depth == 1 or V.is_identity_residual(stage.kind, stage.interblock)):
        stage = replace(stage, connect="chain")
    return stage


def canonicalize(g: Genotype) -> Genotype:
    neuron = g.neuron
    if neuron.kind in ("if", "gwr") and neuron.tau != V.NEURON_DEFAULTS["tau"]:
        neuron = replace(neuron, tau=V.NEURON_DEFAULTS["tau"])
    return Genotype(stages=tuple(_canonical_stage(s) for s in g.stages), neuron=neuron,
                    stem=g.stem, stem_width=g.stem_width)
