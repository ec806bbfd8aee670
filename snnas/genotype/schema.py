"""The genotype: plain frozen data describing a spiking network's topology.

A ``Genotype`` is valid by construction (``__post_init__`` validates), hashable, and has three
equal forms: the data classes, canonical JSON (``to_json``), and a short string (``to_str``).
``key`` identifies a genotype; ``canonical()`` folds genotypes that build the same network.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from snnas.errors import GenotypeError, excerpt
from snnas.files import parse_json
from snnas.genotype import vocabulary as V
from snnas.genotype.topology import Edge, StagePlan, TopologyError, check_wiring, plan_stage


def _fail(path: str, value: Any, allowed: str) -> GenotypeError:
    return GenotypeError(f"{path}: {excerpt(value)} is not allowed; expected {allowed}")


def _check_choice(path: str, value: Any, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _fail(path, value, "one of " + ", ".join(choices))


def _check_int(path: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise _fail(path, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))


def _check_float(path: str, value: Any, lo: float, strict: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= lo if strict else value < lo):
        raise _fail(path, value, f"a finite number {'>' if strict else '>='} {lo}")


@dataclass(frozen=True)
class Neuron:
    """The spiking neuron of the whole network (DESIGN §3 defaults: IF, V_th 1, reset 0, tau 2,
    Sigmoid surrogate with alpha 4, detached reset).

    ``g`` .. ``condense`` are the settings of the window-recurrent ``gwr`` neuron
    (:mod:`snnas.compiler.gwr`); every other kind keeps them at their defaults and leaves them out
    of its JSON, so the keys of IF and LIF genotypes are those they always had.
    """

    kind: str = V.NEURON_DEFAULTS["kind"]
    v_threshold: float = V.NEURON_DEFAULTS["v_threshold"]
    v_reset: float | None = V.NEURON_DEFAULTS["v_reset"]  # None: soft reset (subtract threshold)
    tau: float = V.NEURON_DEFAULTS["tau"]
    surrogate_alpha: float = V.NEURON_DEFAULTS["surrogate_alpha"]
    detach_reset: bool = V.NEURON_DEFAULTS["detach_reset"]
    g: int = V.GWR_DEFAULTS["g"]  # windows per axis
    dil: str = V.GWR_DEFAULTS["dil"]  # enlarged overlapping windows: off, on, or every other neuron layer
    lam: float = V.GWR_DEFAULTS["lam"]  # decay of the carry between windows
    theta: float = V.GWR_DEFAULTS["theta"]  # radian factor of the projection
    proj: str = V.GWR_DEFAULTS["proj"]  # how the carry fuses input and membrane
    condense: str = V.GWR_DEFAULTS["condense"]  # spikes where windows overlap: or (max) or mean

    def __post_init__(self) -> None:
        _check_choice("neuron.kind", self.kind, V.NEURONS)
        _check_float("neuron.v_threshold", self.v_threshold, 0.0)
        if self.v_reset is not None:
            _check_float("neuron.v_reset", self.v_reset, -math.inf)
            if self.v_reset >= self.v_threshold:
                raise _fail("neuron.v_reset", self.v_reset, f"a value below v_threshold ({self.v_threshold}) or null")
        _check_float("neuron.tau", self.tau, 1.0)
        _check_float("neuron.surrogate_alpha", self.surrogate_alpha, 0.0)
        if not isinstance(self.detach_reset, bool):
            raise _fail("neuron.detach_reset", self.detach_reset, "true or false")
        _check_int("neuron.g", self.g, 1, V.GWR_MAX_GROUPS)
        _check_choice("neuron.dil", self.dil, V.GWR_DILATIONS)
        _check_float("neuron.lam", self.lam, 0.0, strict=False)
        _check_float("neuron.theta", self.theta, 0.0)
        _check_choice("neuron.proj", self.proj, V.GWR_PROJECTIONS)
        _check_choice("neuron.condense", self.condense, V.GWR_CONDENSES)
        for name in ("v_threshold", "tau", "surrogate_alpha", "lam", "theta"):  # one representation per value
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.v_reset is not None:
            object.__setattr__(self, "v_reset", float(self.v_reset))
        if self.kind != "gwr":
            for name, default in V.GWR_DEFAULTS.items():
                if getattr(self, name) != default:
                    raise _fail(f"neuron.{name}", getattr(self, name),
                                f"{default!r}: {name} is a setting of the gwr neuron only (kind is {self.kind!r})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.kind != "gwr":
            for name in V.GWR_DEFAULTS:
                del d[name]
        return d


@dataclass(frozen=True)
class Stage:
    """A stage: ``depth`` blocks of one kind and one set of block factors, wired by ``connect``.

    ``width`` is the block's width (bottleneck: the inner width, output 4x; dense: the growth
    rate). Only block 0 applies ``stride``. ``edges`` is used only when ``connect == "edges"``.
    """

    kind: str
    branch: str
    interblock: str
    norm: str
    width: int
    depth: int
    stride: int = 1
    connect: str = "chain"
    edges: tuple[Edge, ...] = ()
    transition: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(Edge(*e) if not isinstance(e, Edge) else e for e in self.edges))
        self.validate("stage")

    def validate(self, path: str) -> None:
        _check_choice(f"{path}.kind", self.kind, V.BLOCK_KINDS)
        _check_choice(f"{path}.branch", self.branch, tuple(V.BRANCHES))
        _check_choice(f"{path}.interblock", self.interblock, tuple(V.INTERBLOCKS))
        _check_choice(f"{path}.norm", self.norm, V.NORMS)
        _check_int(f"{path}.width", self.width, 1, 1 << 16)
        _check_int(f"{path}.depth", self.depth, 1, 256)
        if self.stride not in V.STRIDES or isinstance(self.stride, bool):
            raise _fail(f"{path}.stride", self.stride, "1 or 2")
        _check_choice(f"{path}.connect", self.connect, V.CONNECTS)
        _check_choice(f"{path}.transition", self.transition, V.TRANSITIONS)
        if self.kind == "dense" and (self.branch, self.interblock) != V.DENSE_LAYER[:2]:
            raise GenotypeError(
                f"{path}: a dense layer has no identity path, so it takes branch "
                f"{V.DENSE_LAYER[0]!r} and interblock 'none' (got {self.branch!r}, {self.interblock!r})")
        if self.branch == "conv_bn_sn_conv" and self.interblock != "bn_sn" and self.kind != "dense":
            raise GenotypeError(
                f"{path}.branch: 'conv_bn_sn_conv' ends in a bare conv and relies on the BN after the "
                f"addition; it needs interblock 'bn_sn' (got {self.interblock!r})")
        if self.connect == "dense_concat" and self.stride != 1:
            raise GenotypeError(
                f"{path}.stride: {self.stride!r} is not allowed with connect 'dense_concat' (every block "
                "reads the stage input); expected 1, downsampling with the previous stage's transition 'pool'")
        if self.connect == "edges":
            if not self.edges:
                raise GenotypeError(f"{path}.edges: connect 'edges' needs a non-empty edge list")
            for i, e in enumerate(self.edges):
                _check_int(f"{path}.edges[{i}].src", e.src, -1)
                _check_int(f"{path}.edges[{i}].dst", e.dst, 0)
                _check_choice(f"{path}.edges[{i}].op", e.op, V.EDGE_OPS)
            object.__setattr__(self, "edges", tuple(sorted(self.edges, key=lambda e: (e.dst, e.src))))
        elif self.edges:
            raise GenotypeError(f"{path}.edges: given with connect {self.connect!r}; edges are only for connect 'edges'")
        try:
            check_wiring(self.connect, self.depth, self.stride, self.edges)
        except TopologyError as exc:
            raise GenotypeError(f"{path}.edges: {exc}") from None

    @property
    def name(self) -> str | None:
        return V.block_name(self.kind, self.branch, self.interblock, self.norm)

    def plan(self, in_channels: int) -> StagePlan:
        return plan_stage(self.kind, self.width, self.depth, self.stride, self.connect, self.edges,
                          self.transition, self.interblock, in_channels)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["edges"] = [list(e) for e in self.edges]
        return d


_GENOTYPE_KEYS = ("format", "neuron", "stem", "stem_width", "stages")


@dataclass(frozen=True)
class Genotype:
    """A whole network: neuron, stem and stages. Input channels, classes and width multipliers
    are build arguments, not genes."""

    stages: tuple[Stage, ...]
    neuron: Neuron = field(default_factory=Neuron)
    stem: str = "imagenet"
    stem_width: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.stages, (tuple, list)) or not self.stages:
            raise _fail("stages", self.stages, "a non-empty list of stages")
        object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.neuron, Neuron):
            raise _fail("neuron", self.neuron, "a Neuron")
        _check_choice("stem", self.stem, V.STEMS)
        _check_int("stem_width", self.stem_width, 1, 1 << 16)
        channels = self.stem_width
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise _fail(f"stages[{i}]", stage, "a Stage")
            try:
                channels = stage.plan(channels).out_channels
            except TopologyError as exc:
                raise GenotypeError(f"stages[{i}].edges: {exc}") from None

    # ----- forms -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": V.FORMAT_VERSION,
            "neuron": self.neuron.to_dict(),
            "stem": self.stem,
            "stem_width": self.stem_width,
            "stages": [s.to_dict() for s in self.stages],
        }

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: sorted keys, compact unless ``indent`` is given."""
        sep = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, separators=sep, indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "Genotype":
        if not isinstance(data, dict):
            raise _fail("genotype", type(data).__name__, "a JSON object")
        unknown = sorted(set(map(str, data)) - set(_GENOTYPE_KEYS))
        if unknown:
            raise _fail(unknown[0], data.get(unknown[0]), "no such field; fields are " + ", ".join(_GENOTYPE_KEYS))
        if data.get("format") != V.FORMAT_VERSION:
            raise _fail("format", data.get("format"), f"format version {V.FORMAT_VERSION}")
        neuron = data.get("neuron", {})
        if not isinstance(neuron, dict):
            raise _fail("neuron", neuron, "an object")
        neuron_fields = [f.name for f in fields(Neuron)]
        for k in neuron:
            if k not in neuron_fields:
                raise _fail(f"neuron.{k}", neuron[k], "no such field; fields are " + ", ".join(neuron_fields))
        stages = data.get("stages")
        if not isinstance(stages, list) or not stages:
            raise _fail("stages", stages, "a non-empty list of stages")
        stage_fields = [f.name for f in fields(Stage)]
        built = []
        for i, s in enumerate(stages):
            if not isinstance(s, dict):
                raise _fail(f"stages[{i}]", s, "an object")
            for k in s:
                if k not in stage_fields:
                    raise _fail(f"stages[{i}].{k}", s[k], "no such field; fields are " + ", ".join(stage_fields))
            missing = [k for k in ("kind", "branch", "interblock", "norm", "width", "depth") if k not in s]
            if missing:
                raise _fail(f"stages[{i}].{missing[0]}", None, "a value (the field is required)")
            edges = s.get("edges", [])
            if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 3 for e in edges):
                raise _fail(f"stages[{i}].edges", edges, "a list of [src, dst, op] triples")
            try:
                built.append(Stage(**{**s, "edges": tuple(Edge(*e) for e in edges)}))
            except GenotypeError as exc:
                raise GenotypeError(str(exc).replace("stage", f"stages[{i}]", 1)) from None
        return cls(stages=tuple(built), neuron=Neuron(**neuron),
                   stem=data.get("stem", "imagenet"), stem_width=data.get("stem_width", 64))

    @classmethod
    def from_json(cls, text: str | bytes) -> "Genotype":
        return cls.from_dict(parse_json(text, "genotype JSON", GenotypeError))

    def to_str(self) -> str:
        from snnas.genotype.text import format_genotype

        return format_genotype(self)

    @classmethod
    def from_str(cls, text: str) -> "Genotype":
        from snnas.genotype.text import parse_genotype

        return parse_genotype(text)

    def __str__(self) -> str:
        return self.to_str()

    # ----- identity and equivalence ------------------------------------------------------
    @cached_property
    def key(self) -> str:
        """Stable id: SHA-256 of the canonical JSON, 16 hex digits."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def canonical(self) -> "Genotype":
        from snnas.genotype.equivalence import canonicalize

        return canonicalize(self)

    def replace(self, **changes: Any) -> "Genotype":
        return replace(self, **changes)

    # ----- views -------------------------------------------------------------------------
    def plans(self) -> tuple[StagePlan, ...]:
        out, channels = [], self.stem_width
        for stage in self.stages:
            plan = stage.plan(channels)
            out.append(plan)
            channels = plan.out_channels
        return tuple(out)

    def to_networkx(self):
        from snnas.genotype.graph import to_networkx

        return to_networkx(self)
