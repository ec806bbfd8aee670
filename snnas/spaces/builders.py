"""Space builders: from a space's genes and a trial's choices to a genotype, and back.

A builder is registered under the name a space file gives as ``builder``. ``suggest`` asks a
trial (anything with ``suggest_categorical``, e.g. an Optuna trial) for its genes under stable
parameter names with string choices; ``encode`` gives the parameters that rebuild a genotype
(used to enqueue the paper's networks as seeds), or None where the space cannot express it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

from snnas.genotype import Edge, Genotype, Neuron, Stage
from snnas.genotype.topology import expand_edges
from snnas.genotype.vocabulary import BLOCK_NAMES, DENSE_LAYER, GWR_DEFAULTS
from snnas.presets import DENSENET_LAYOUTS, RESNET_LAYOUTS, RESNET_STRIDES, RESNET_WIDTHS


class Trial(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class SpaceContext:
    """What a builder gets besides the trial: the space's genes and fixed settings."""

    genes: dict[str, tuple[str, ...]]
    per_stage: frozenset[str]
    neuron: Neuron
    stem: str


@dataclass(frozen=True)
class Builder:
    suggest: Callable[[Trial, SpaceContext], Genotype]
    encode: Callable[[Genotype, SpaceContext], dict[str, str] | None]
    genes: frozenset[str]  # the gene names a space file may give this builder


BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, builder: Builder) -> None:
    if name in BUILDERS:
        raise ValueError(f"space builder {name!r} is already registered")
    BUILDERS[name] = builder


def _gene(trial: Trial, ctx: SpaceContext, gene: str, stage: int | None = None) -> str:
    name = f"s{stage}.{gene}" if stage is not None and gene in ctx.per_stage else gene
    return trial.suggest_categorical(name, list(ctx.genes[gene]))


def _put(params: dict[str, str], ctx: SpaceContext, gene: str, stage: int | None, value: str) -> bool:
    """Record a gene value for ``encode``; False when the space cannot hold it."""
    if value not in ctx.genes[gene]:
        return False
    name = f"s{stage}.{gene}" if stage is not None and gene in ctx.per_stage else gene
    if params.get(name, value) != value:
        return False
    params[name] = value
    return True


def _genotype(stages, ctx: SpaceContext, stem_width: int = 64, neuron: Neuron | None = None) -> Genotype:
    return Genotype(stages=tuple(stages), neuron=neuron or ctx.neuron, stem=ctx.stem, stem_width=stem_width)


# ---- resnet_stages: the paper's space ------------------------------------------------------
def _resnet_suggest(trial: Trial, ctx: SpaceContext) -> Genotype:
    depth = int(_gene(trial, ctx, "depth"))
    kind, layers = RESNET_LAYOUTS[depth]
    stages = []
    for i, (width, n, stride) in enumerate(zip(RESNET_WIDTHS, layers, RESNET_STRIDES)):
        branch, interblock, norm = BLOCK_NAMES[_gene(trial, ctx, "block", i)]
        stages.append(Stage(kind=kind, branch=branch, interblock=interblock, norm=norm, width=width, depth=n,
                            stride=stride, connect=_gene(trial, ctx, "connect", i)))
    return _genotype(stages, ctx)


def _resnet_encode(g: Genotype, ctx: SpaceContext) -> dict[str, str] | None:
    params: dict[str, str] = {}
    depth = next((d for d, (kind, layers) in RESNET_LAYOUTS.items()
                  if len(g.stages) == 4 and all(s.kind == kind and s.depth == n for s, n in zip(g.stages, layers))),
                 None)
    if depth is None or not _put(params, ctx, "depth", None, str(depth)):
        return None
    for i, s in enumerate(g.stages):
        if s.name not in BLOCK_NAMES or not _put(params, ctx, "block", i, s.name):
            return None
        if not _put(params, ctx, "connect", i, s.connect):
            return None
    return params


register_builder("resnet_stages", Builder(_resnet_suggest, _resnet_encode,
                                          frozenset({"depth", "block", "connect"})))


# ---- dense_ops: dense addition against dense concatenation (the paper's Table III) ---------
# ResNet layouts paired with the DenseNets of comparable size, as in the paper's Table III.
DENSE_PARTNER = {18: 121, 34: 201, 50: 161}


def _dense_ops_stages(depth: int, ops: list[str], block: str) -> tuple[list[Stage], int]:
    kind, layers = RESNET_LAYOUTS[depth]
    growth, dense_layers, dense_stem = DENSENET_LAYOUTS[DENSE_PARTNER[depth]]
    branch, interblock, norm = BLOCK_NAMES[block]
    stages = []
    for i, op in enumerate(ops):
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        # A concatenating stage cannot stride (every block reads its input), so the stage before
        # it pools in its transition; an adding stage strides itself.
        transition = "pool" if nxt == "concat" else "none"
        if op == "concat":
            stages.append(Stage(kind="dense", branch=DENSE_LAYER[0], interblock=DENSE_LAYER[1], norm=DENSE_LAYER[2],
                                width=growth, depth=dense_layers[i], stride=1, connect="dense_concat",
                                transition=transition))
        else:
            stages.append(Stage(kind=kind, branch=branch, interblock=interblock, norm=norm, width=RESNET_WIDTHS[i],
                                depth=layers[i], stride=RESNET_STRIDES[i], connect="dense_add",
                                transition=transition))
    return stages, (dense_stem if ops[0] == "concat" else 64)


def _dense_ops_suggest(trial: Trial, ctx: SpaceContext) -> Genotype:
    depth = int(_gene(trial, ctx, "depth"))
    ops = [_gene(trial, ctx, "op", i) for i in range(4)]
    block = _gene(trial, ctx, "block") if "add" in ops else ctx.genes["block"][0]
    stages, stem_width = _dense_ops_stages(depth, ops, block)
    return _genotype(stages, ctx, stem_width)


def _dense_ops_encode(g: Genotype, ctx: SpaceContext) -> dict[str, str] | None:
    ops = ["concat" if s.kind == "dense" else "add" for s in g.stages]
    if len(ops) != 4:
        return None
    names = {s.name for s in g.stages if s.kind != "dense"}
    block = names.pop() if len(names) == 1 else (ctx.genes["block"][0] if not names else None)
    for depth_text in ctx.genes["depth"]:
        if block is None or block not in BLOCK_NAMES:
            return None
        stages, stem_width = _dense_ops_stages(int(depth_text), ops, block)
        candidate = _genotype(stages, ctx, stem_width)
        if candidate.canonical() == g.replace(neuron=ctx.neuron, stem=ctx.stem).canonical():
            params = {"depth": depth_text}
            for i, op in enumerate(ops):
                if not _put(params, ctx, "op", i, op):
                    return None
            if "add" in ops and not _put(params, ctx, "block", None, block):
                return None
            return params
    return None


register_builder("dense_ops", Builder(_dense_ops_suggest, _dense_ops_encode, frozenset({"depth", "op", "block"})))


# ---- wiring: block factors, explicit edges, neuron and width -------------------------------
def _optional_edges(depth: int) -> list[tuple[int, int]]:
    """Edges beyond the chain that keep every stage well-formed: between blocks and into the
    output (the stage input is left out: its width and resolution differ from the blocks')."""
    return [(j, k) for k in range(2, depth + 1) for j in range(0, k - 1)]


def _edge_name(stage: int, j: int, k: int, depth: int) -> str:
    return f"s{stage}.e{j}>{'o' if k == depth else k}"


def _neuron(trial: Trial, ctx: SpaceContext) -> Neuron:
    """The neuron gene: its kind, with the space's fixed settings for the rest."""
    return replace(ctx.neuron, kind=_gene(trial, ctx, "neuron"))


def _wiring_suggest(trial: Trial, ctx: SpaceContext) -> Genotype:
    neuron = _neuron(trial, ctx)
    base = int(_gene(trial, ctx, "width"))
    stages = []
    for i, stride in enumerate(RESNET_STRIDES):
        depth = int(_gene(trial, ctx, "depth", i))
        branch, interblock, norm = _gene(trial, ctx, "block", i).split("/")
        edges = list(expand_edges("chain", depth))
        for j, k in _optional_edges(depth):
            op = trial.suggest_categorical(_edge_name(i, j, k, depth), list(ctx.genes["edge"]))
            if op != "none":
                edges.append(Edge(j, k, op))
        stages.append(Stage(kind="basic", branch=branch, interblock=interblock, norm=norm, width=base * 2 ** i,
                            depth=depth, stride=stride, connect="edges", edges=tuple(edges)))
    return _genotype(stages, ctx, stem_width=base, neuron=neuron).canonical()


def _wiring_encode(g: Genotype, ctx: SpaceContext) -> dict[str, str] | None:
    params: dict[str, str] = {}
    if len(g.stages) != len(RESNET_STRIDES) or not _put(params, ctx, "neuron", None, g.neuron.kind):
        return None
    if any(getattr(g.neuron, name) != default for name, default in GWR_DEFAULTS.items()):
        return None  # the neuron gene builds gwr with its default settings only
    if not _put(params, ctx, "width", None, str(g.stem_width)):
        return None
    for i, s in enumerate(g.stages):
        if s.kind != "basic" or s.width != g.stem_width * 2 ** i or s.stride != RESNET_STRIDES[i]:
            return None
        if not _put(params, ctx, "depth", i, str(s.depth)):
            return None
        if not _put(params, ctx, "block", i, f"{s.branch}/{s.interblock}/{s.norm}"):
            return None
        edges = set(expand_edges(s.connect, s.depth, s.edges))
        chain = set(expand_edges("chain", s.depth))
        if not chain <= edges:
            return None
        extra = {(e.src, e.dst): e.op for e in edges - chain}
        if not set(extra) <= set(_optional_edges(s.depth)):
            return None
        for j, k in _optional_edges(s.depth):
            name = _edge_name(i, j, k, s.depth)
            op = extra.get((j, k), "none")
            if op not in ctx.genes["edge"]:
                return None
            params[name] = op
    return params


register_builder("wiring", Builder(_wiring_suggest, _wiring_encode,
                                   frozenset({"neuron", "width", "depth", "block", "edge"})))


# ---- sized_stages: the efficient space (connection, depth and width per stage, the neuron) -----
# Each stage's width is a multiple of the ResNet stage width; the stem is as wide as stage 1, as in
# every ResNet (64 and 64), so narrowing stage 1 narrows the stem too and its analog MACs with it.
def _sized_suggest(trial: Trial, ctx: SpaceContext) -> Genotype:
    neuron = _neuron(trial, ctx)
    stages = []
    for i, (base, stride) in enumerate(zip(RESNET_WIDTHS, RESNET_STRIDES)):
        branch, interblock, norm = BLOCK_NAMES[_gene(trial, ctx, "block", i)]
        depth = int(_gene(trial, ctx, "blocks", i))
        connect = _gene(trial, ctx, "connect", i)
        width = round(base * float(_gene(trial, ctx, "width_mult", i)))
        stages.append(Stage(kind="basic", branch=branch, interblock=interblock, norm=norm, width=width, depth=depth,
                            stride=stride, connect=connect))
    return _genotype(stages, ctx, stem_width=stages[0].width, neuron=neuron)


def _width_choice(width: int, base: int, ctx: SpaceContext) -> str | None:
    return next((c for c in ctx.genes["width_mult"] if round(base * float(c)) == width), None)


def _sized_encode(g: Genotype, ctx: SpaceContext) -> dict[str, str] | None:
    params: dict[str, str] = {}
    if len(g.stages) != len(RESNET_WIDTHS) or g.stem_width != g.stages[0].width:
        return None
    if not _put(params, ctx, "neuron", None, g.neuron.kind) or g.neuron != replace(ctx.neuron, kind=g.neuron.kind):
        return None
    for i, (s, base, stride) in enumerate(zip(g.stages, RESNET_WIDTHS, RESNET_STRIDES)):
        mult = _width_choice(s.width, base, ctx)
        if s.kind != "basic" or s.stride != stride or mult is None or s.name not in BLOCK_NAMES:
            return None
        for gene, value in (("block", s.name), ("blocks", str(s.depth)), ("connect", s.connect), ("width_mult", mult)):
            if not _put(params, ctx, gene, i, value):
                return None
    return params


register_builder("sized_stages", Builder(_sized_suggest, _sized_encode,
                                         frozenset({"neuron", "block", "blocks", "connect", "width_mult"})))
