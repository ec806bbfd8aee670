"""The short string form of a genotype, in the spirit of NAS-Bench-201's cell strings.

    if|imagenet64|basic.origin.64x2.s1.chain|basic.origin.128x2.s2.dense_add|...
    lif(tau=3)|small16|basic.sn_conv_bn_sn_conv_bn/sn/bn.16x3.s1.edges[i>0+,0>1+,0>2&,1>2+,2>o+].project
    gwr(g=3,dil=on,proj=mean)|half16|basic.pa_b.16x2.s1.chain|...

Fields: neuron (non-default settings in parentheses), stem and its width, then one field per stage:
kind . block (the paper's name where the factors match one, else branch/interblock/norm) .
WIDTHxDEPTH . sSTRIDE . connect (edges in brackets: ``i`` is the stage input, ``o`` its output,
``+`` adds, ``&`` concatenates) [. transition]. ``parse_genotype(format_genotype(g)) == g``.
"""
from __future__ import annotations

import re

from snnas.errors import GenotypeError
from snnas.genotype import vocabulary as V
from snnas.genotype.schema import Genotype, Neuron, Stage
from snnas.genotype.topology import INPUT, Edge

_NEURON_KEYS = {"vth": "v_threshold", "vreset": "v_reset", "tau": "tau", "alpha": "surrogate_alpha",
                "detach": "detach_reset", "g": "g", "dil": "dil", "lam": "lam", "theta": "theta", "proj": "proj",
                "condense": "condense"}
_DEFAULTS = {**V.NEURON_DEFAULTS, **V.GWR_DEFAULTS}
_WORD_SETTINGS = frozenset({"dil", "proj", "condense"})  # settings whose values are names
_OPS = {"add": "+", "concat": "&"}
_OPS_BACK = {v: k for k, v in _OPS.items()}
_NUM = r"-?\d{1,12}(?:\.\d{1,20})?(?:e[+-]?\d{1,3})?"


def _num(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


def _format_neuron(n: Neuron) -> str:
    parts = []
    for short, name in _NEURON_KEYS.items():
        value, default = getattr(n, name), _DEFAULTS[name]
        if value == default and type(value) is type(default):
            continue
        if value is None:
            parts.append(f"{short}=none")
        elif isinstance(value, (bool, int)):
            parts.append(f"{short}={int(value)}")
        elif isinstance(value, str):
            parts.append(f"{short}={value}")
        else:
            parts.append(f"{short}={_num(value)}")
    return n.kind + (f"({','.join(parts)})" if parts else "")


def _format_stage(s: Stage) -> str:
    block = s.name or f"{s.branch}/{s.interblock}/{s.norm}"
    connect = s.connect
    if connect == "edges":
        def node(i: int) -> str:
            return "i" if i == INPUT else "o" if i == s.depth else str(i)
        connect += "[" + ",".join(f"{node(e.src)}>{node(e.dst)}{_OPS[e.op]}" for e in s.edges) + "]"
    text = f"{s.kind}.{block}.{s.width}x{s.depth}.s{s.stride}.{connect}"
    return text if s.transition == "none" else f"{text}.{s.transition}"


def format_genotype(g: Genotype) -> str:
    return "|".join([_format_neuron(g.neuron), f"{g.stem}{g.stem_width}"] + [_format_stage(s) for s in g.stages])


def _bad(text: str, why: str) -> GenotypeError:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return GenotypeError(f"genotype string: {why} in {shown!r}")


_NEURON_RE = re.compile(r"^([a-z]+)(?:\(([^()]*)\))?$")
_STEM_RE = re.compile(r"^([a-z]+)(\d{1,9})$")
_STAGE_RE = re.compile(
    r"^(?P<kind>[a-z]+)\.(?P<block>[a-z_]+(?:/[a-z_]+/[a-z_]+)?)\.(?P<width>\d{1,9})x(?P<depth>\d{1,9})"
    r"\.s(?P<stride>\d{1,9})\.(?P<connect>[a-z_]+)(?:\[(?P<edges>[^\[\]]*)\])?(?:\.(?P<transition>[a-z]+))?$")
_EDGE_RE = re.compile(r"^(i|\d{1,6})>(o|\d{1,6})([+&])$")


def _setting_value(name: str, text: str):
    """The value a neuron setting's text stands for; text of the wrong form is handed on as it
    is, so that validation names the field (``neuron.g: '2.5' is not allowed; ...``)."""
    if name == "v_reset" and text == "none":
        return None
    if name == "detach_reset":
        return text == "1" if text in ("0", "1") else text
    if name in _WORD_SETTINGS:
        return text
    if name == "g":
        return int(text) if re.fullmatch(r"\d{1,6}", text) else text
    return float(text) if re.fullmatch(_NUM, text) else text


def _parse_neuron(field: str) -> Neuron:
    m = _NEURON_RE.match(field)
    if not m:
        raise _bad(field, "malformed neuron field (expected e.g. 'if' or 'lif(tau=2)')")
    kwargs: dict = {"kind": m.group(1)}
    for item in filter(None, (m.group(2) or "").split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in _NEURON_KEYS:
            raise _bad(field, f"unknown neuron setting {key!r} (known: {', '.join(_NEURON_KEYS)})")
        kwargs[_NEURON_KEYS[key]] = _setting_value(_NEURON_KEYS[key], value)
    return Neuron(**kwargs)


def _parse_stage(field: str, index: int) -> Stage:
    m = _STAGE_RE.match(field)
    if not m:
        raise _bad(field, f"stage {index} is malformed (expected KIND.BLOCK.WIDTHxDEPTH.sSTRIDE.CONNECT[.TRANSITION])")
    kind, block = m.group("kind"), m.group("block")
    if "/" in block:
        branch, interblock, norm = block.split("/")
    else:
        table = V.DENSE_NAMES if kind == "dense" else V.BLOCK_NAMES
        if block not in table:
            raise _bad(field, f"stage {index}: unknown block {block!r} for kind {kind!r} "
                              f"(named blocks: {', '.join(table)}; or give branch/interblock/norm)")
        branch, interblock, norm = table[block]
    depth = int(m.group("depth"))
    edges: tuple[Edge, ...] = ()
    if m.group("edges") is not None:
        if m.group("connect") != "edges":
            raise _bad(field, f"stage {index}: an edge list is only allowed with connect 'edges'")
        for item in m.group("edges").split(","):
            em = _EDGE_RE.match(item)
            if not em:
                raise _bad(field, f"stage {index}: malformed edge {item!r} (expected e.g. 'i>0+' or '0>o&')")
            src = INPUT if em.group(1) == "i" else int(em.group(1))
            dst = depth if em.group(2) == "o" else int(em.group(2))
            edges += (Edge(src, dst, _OPS_BACK[em.group(3)]),)
    try:
        return Stage(kind=kind, branch=branch, interblock=interblock, norm=norm, width=int(m.group("width")),
                     depth=depth, stride=int(m.group("stride")), connect=m.group("connect"), edges=edges,
                     transition=m.group("transition") or "none")
    except GenotypeError as exc:
        raise GenotypeError(str(exc).replace("stage", f"stages[{index}]", 1)) from None


def parse_genotype(text: str) -> Genotype:
    if not isinstance(text, str):
        raise GenotypeError(f"genotype string: expected text, got {type(text).__name__}")
    fields = text.strip().split("|")
    if len(fields) < 3:
        raise _bad(text, "too few fields (expected NEURON|STEMWIDTH|STAGE[|STAGE...])")
    neuron = _parse_neuron(fields[0])
    sm = _STEM_RE.match(fields[1])
    if not sm:
        raise _bad(fields[1], "malformed stem field (expected e.g. 'imagenet64' or 'small16')")
    stages = tuple(_parse_stage(f, i) for i, f in enumerate(fields[2:]))
    return Genotype(stages=stages, neuron=neuron, stem=sm.group(1), stem_width=int(sm.group(2)))
