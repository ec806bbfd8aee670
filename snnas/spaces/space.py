"""Search spaces as declarative TOML files: the catalog ships inside the package
(``snnas/spaces/catalog/<name>.toml``, read through ``importlib.resources`` so an installed wheel
finds it as well as a checkout), and ``--space path.toml`` reads any other file.

A space file names its builder, the genes it searches with their choices (which of them are
chosen per stage), what it fixes, and the presets it enqueues as seeds::

    name = "dense_additive"
    builder = "resnet_stages"
    objectives = ["acc"]  # what a search optimizes unless --objectives says (default acc)
    [fixed]
    stem = "auto"        # "auto": `half` for inputs up to 64 px, `imagenet` above (resolve_stem)
    neuron = "if"
    [genes]
    depth = ["18", "34"]
    block = ["origin", "tdbn", "baa", "sew", "pa_a", "pa_b"]
    connect = ["chain", "dense_add"]
    per_stage = ["block", "connect"]
    [seeds]
    presets = ["danet_a_resnet18", ...]

Loading validates everything and names the bad key; nothing is evaluated.
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from snnas.errors import GenotypeError, SpaceError, excerpt
from snnas.files import read_text
from snnas.genotype import Genotype, Neuron
from snnas.genotype.vocabulary import (AUTO_STEM, BLOCK_NAMES, BRANCHES, EDGE_OPS, INTERBLOCKS, NEURONS, NORMS,
                                       STEMS, resolve_stem)
from snnas.presets import PRESETS, RESNET_LAYOUTS, get_preset
from snnas.search.attrs import OBJECTIVE_DIRECTIONS
from snnas.spaces.builders import BUILDERS, SpaceContext, Trial

# Package data, not a folder beside the checkout: a wheel ships exactly what this names.
CATALOG = "catalog"

# The values each gene may take in any space file.
GENE_VALUES: dict[str, tuple[str, ...]] = {
    "depth": tuple(str(d) for d in RESNET_LAYOUTS) + ("1", "2", "3", "4"),
    "block": tuple(BLOCK_NAMES) + tuple(f"{b}/{i}/{n}" for b in BRANCHES for i in INTERBLOCKS for n in NORMS),
    "connect": ("chain", "dense_add"),
    "op": ("add", "concat"),
    "neuron": NEURONS,
    "width": tuple(str(w) for w in (8, 16, 24, 32, 48, 64, 96, 128)),
    "edge": ("none",) + EDGE_OPS,
    "blocks": ("1", "2", "3", "4", "6"),  # blocks in a stage (6: ResNet-34's third stage)
    "width_mult": ("0.5", "0.75", "1", "1.5"),  # x the ResNet stage width
}
_TOP_KEYS = {"name", "description", "builder", "objectives", "fixed", "genes", "seeds"}
_FIXED_KEYS = {"stem", "neuron", "tau", "v_threshold"}


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    builder: str
    context: SpaceContext
    seed_presets: tuple[str, ...]
    source: str
    objectives: tuple[str, ...] = ("acc",)  # what a search of it optimizes unless told otherwise

    def suggest(self, trial: Trial) -> Genotype:
        """The genotype a trial's choices describe (raises GenotypeError for an invalid one)."""
        return BUILDERS[self.builder].suggest(trial, self.context)

    def encode(self, genotype: Genotype) -> dict[str, str] | None:
        return BUILDERS[self.builder].encode(genotype, self.context)

    def uniform(self) -> list[tuple[dict[str, str], Genotype]]:
        """Every network that makes one choice per gene for the whole network (the same block and
        wiring in every stage): (trial parameters, genotype) in the file's gene and choice order.
        For a space without per-stage genes this is the whole space."""
        names = list(self.context.genes)
        out = []
        for values in itertools.product(*(self.context.genes[n] for n in names)):
            trial = _UniformTrial(dict(zip(names, values)))
            genotype = self.suggest(trial)
            out.append((trial.params, genotype))
        return out

    def seeds(self) -> list[tuple[str, dict[str, str]]]:
        """(preset name, trial parameters) for every seed, in file order, one per parameter set."""
        out, seen = [], set()
        for name in self.seed_presets:
            g = get_preset(name).replace(stem=self.context.stem, neuron=self.context.neuron)
            params = self.encode(g)
            if params is None:
                raise SpaceError(f"space {self.name!r}: seed preset {name!r} cannot be expressed by its genes")
            key = tuple(sorted(params.items()))
            if key not in seen:
                seen.add(key)
                out.append((name, params))
        return out


class _UniformTrial:
    """A trial that answers every per-stage copy of a gene (``s2.block``) with the gene's one value;
    parameters that are no gene of their own (the wiring space's optional edges) take their first
    choice (no extra edge)."""

    def __init__(self, choice: dict[str, str]):
        self.choice, self.params = choice, {}

    def suggest_categorical(self, name: str, choices: Any) -> str:
        value = self.choice.get(name.split(".", 1)[-1], list(choices)[0])
        self.params[name] = value
        return value


def _err(source: str, key: str, value: Any, allowed: str) -> SpaceError:
    return SpaceError(f"space file {source}: {key} = {excerpt(value)} is not allowed; expected {allowed}")


def _catalog():
    """The packaged space files' folder (a Traversable: a plain folder in a checkout or a wheel)."""
    return resources.files("snnas.spaces") / CATALOG


def list_spaces() -> list[str]:
    """The names of the spaces that ship with the package."""
    return sorted(f.name[:-len(".toml")] for f in _catalog().iterdir() if f.name.endswith(".toml") and f.is_file())


def _space_text(name_or_path: str) -> tuple[str, str, str]:
    """(source, default name, TOML text) of a packaged space name or a .toml path. A name is
    looked up among the packaged names only, so ``--space ../x`` cannot reach outside the catalog."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpaceError(f"space file {name_or_path}: not found")
        return str(path), path.stem, read_text(path, "space file", SpaceError)
    known = list_spaces()
    if name_or_path not in known:
        raise SpaceError(f"space {name_or_path!r} is unknown; known spaces: {', '.join(known)} (or give a .toml path)")
    entry = _catalog() / f"{name_or_path}.toml"
    try:
        return str(entry), name_or_path, entry.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a broken installation, not a user error
        raise SpaceError(f"packaged space {name_or_path!r} ({entry}) cannot be read: {exc}") from None


def load_space(name_or_path: str, resolution: int | None = None) -> Space:
    """Load and validate a space; ``resolution`` resolves ``stem = "auto"``."""
    source, stem, text = _space_text(name_or_path)
    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise SpaceError(f"space file {source}: nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"space file {source}: not valid TOML ({exc})") from None
    for key in doc:
        if key not in _TOP_KEYS:
            raise _err(source, key, doc[key], "no such key; keys are " + ", ".join(sorted(_TOP_KEYS)))
    name = doc.get("name", stem)
    if not isinstance(name, str) or not name:
        raise _err(source, "name", name, "a non-empty string")
    builder = doc.get("builder")
    if not isinstance(builder, str) or builder not in BUILDERS:
        raise _err(source, "builder", builder, "one of " + ", ".join(sorted(BUILDERS)))
    objectives = doc.get("objectives", ["acc"])
    if not isinstance(objectives, list) or not objectives or objectives[0] != "acc" \
            or any(o not in OBJECTIVE_DIRECTIONS for o in objectives) or len(set(objectives)) != len(objectives):
        raise _err(source, "objectives", objectives,
                   "a list starting with acc, then any of " + ", ".join(o for o in OBJECTIVE_DIRECTIONS if o != "acc"))
    fixed = doc.get("fixed", {})
    if not isinstance(fixed, dict):
        raise _err(source, "fixed", fixed, "a table")
    for key in fixed:
        if key not in _FIXED_KEYS:
            raise _err(source, f"fixed.{key}", fixed[key], "no such key; keys are " + ", ".join(sorted(_FIXED_KEYS)))
    stem = fixed.get("stem", AUTO_STEM)
    if stem == AUTO_STEM:
        stem = resolve_stem(AUTO_STEM, "imagenet", resolution)
    elif stem not in STEMS:
        raise _err(source, "fixed.stem", stem, "auto or one of " + ", ".join(STEMS))
    try:
        neuron = Neuron(kind=fixed.get("neuron", "if"), tau=fixed.get("tau", 2.0),
                        v_threshold=fixed.get("v_threshold", 1.0))
    except GenotypeError as exc:
        raise SpaceError(f"space file {source}: fixed.{exc}") from None

    genes_doc = doc.get("genes")
    if not isinstance(genes_doc, dict) or not genes_doc:
        raise _err(source, "genes", genes_doc, "a table of genes and their choices")
    allowed_genes = BUILDERS[builder].genes
    per_stage = genes_doc.get("per_stage", [])
    genes: dict[str, tuple[str, ...]] = {}
    for gene, choices in genes_doc.items():
        if gene == "per_stage":
            continue
        if gene not in allowed_genes:
            raise _err(source, f"genes.{gene}", choices,
                       f"a gene of builder {builder!r}: " + ", ".join(sorted(allowed_genes)))
        if not isinstance(choices, list) or not choices:
            raise _err(source, f"genes.{gene}", choices, "a non-empty list of strings")
        for c in choices:
            if not isinstance(c, str) or c not in GENE_VALUES[gene]:
                raise _err(source, f"genes.{gene}", c, "one of " + ", ".join(GENE_VALUES[gene]))
        if len(set(choices)) != len(choices):
            raise _err(source, f"genes.{gene}", choices, "choices without repeats")
        genes[gene] = tuple(choices)
    missing = sorted(allowed_genes - set(genes))
    if missing:
        raise _err(source, f"genes.{missing[0]}", None, "a list of choices (builder "
                   f"{builder!r} needs {', '.join(sorted(allowed_genes))})")
    if not isinstance(per_stage, list) or any(not isinstance(p, str) or p not in genes for p in per_stage):
        raise _err(source, "genes.per_stage", per_stage, "a list of gene names from this file")
    if builder == "wiring" and "block" in genes:
        for c in genes["block"]:
            if c in BLOCK_NAMES:
                raise _err(source, "genes.block", c, "block factors branch/interblock/norm for the wiring builder")

    seeds_doc = doc.get("seeds", {})
    presets = seeds_doc.get("presets", []) if isinstance(seeds_doc, dict) else seeds_doc
    known = lambda p: isinstance(p, str) and p in PRESETS  # noqa: E731
    if not isinstance(presets, list) or not all(known(p) for p in presets):
        bad = next((p for p in presets if not known(p)), presets) if isinstance(presets, list) else presets
        raise _err(source, "seeds.presets", bad, "a list of preset names (see `snnas show --list`)")
    space = Space(name=name, description=str(doc.get("description", "")), builder=builder,
                  context=SpaceContext(genes=genes, per_stage=frozenset(per_stage), neuron=neuron, stem=stem),
                  seed_presets=tuple(presets), source=source, objectives=tuple(objectives))
    space.seeds()  # every seed must be expressible: fail at load, not mid-search
    return space
