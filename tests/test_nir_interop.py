"""NIR files run by other runtimes: snnTorch's and Norse's importers (the versions pinned in the
``nir-interop`` extra) against the snnas model's logits, for one network per block type and a
dense-addition stage, T=1 and T=4.

Where an importer is wrong in a way the file cannot avoid, the smallest patch is applied here, after
asserting that the bug is still there: an upstream fix fails the test, and its patch goes.
"""
from __future__ import annotations

import graphlib
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from nir_helpers import on_the_threshold, require, trained_like
from snnas import get_preset
from snnas.genotype import Neuron
from snnas.nir_export import NIR_DT, export_graph

nir = require("nir")
snn = require("snntorch")
snntorch_nir = require("snntorch.import_nir")
norse_torch = require("norse.torch")
norse_nir = require("norse.torch.utils.import_nir")

pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated")  # Norse's from_nir

TOLERANCE = 1e-5  # on logits: folded BatchNorms and pools change the float rounding, never a spike here
RES = 32  # the last feature map is 2x2, so the global pool is not an identity
# Strong enough that every tiny network below still spikes through to its logits at T=1.
IMAGES = torch.randn(6, 1, RES, RES, generator=torch.Generator().manual_seed(1)) * 8
# One network per block type (the six connections, the bottleneck) and a dense-addition stage.
NETWORKS = ["origin_resnet18", "tdbn_resnet18", "baa_resnet18", "sew_resnet18", "pa_a_resnet18", "pa_b_resnet18",
            "sew_resnet50", "danet_c_resnet18"]


# ---------------------------------------------------------------- importer bugs, asserted then patched
def _batched_flatten(module: torch.nn.Module) -> None:
    """Both importers give NIR's Flatten start_dim, which counts the axes of one sample (NIR's shapes
    have no batch axis: snnTorch's own exporter subtracts one), to torch.nn.Flatten unchanged: on a
    batch, start_dim 0 flattens the batch away. Patch: count the batch axis."""
    flattens = [m for m in module.modules() if isinstance(m, torch.nn.Flatten)]
    assert flattens and all(f.start_dim == 0 for f in flattens), "the importer now maps Flatten for batches"
    for f in flattens:
        f.start_dim = 1


def _snntorch_if(node, upstream):
    """snnTorch 1.0.0 maps NIR's IF (dv/dt = R*I: r = 1/dt adds the input once a step) only with r == 1,
    and then to a leaky neuron (beta 0.9) that resets by subtraction. Patch: an integrator (beta 1)
    that resets to zero, which is NIR's IF with v_reset 0."""
    with pytest.raises(AssertionError, match="r != 1"):  # the file's r = 1/dt, as NIR defines it
        upstream(node)
    unit = upstream(nir.IF(r=np.ones(3), v_threshold=np.ones(3)))
    assert float(unit.beta) == pytest.approx(0.9) and unit.reset_mechanism == "subtract", "snnTorch's IF changed"
    assert np.all(node.v_reset == 0) and np.unique(node.v_threshold).size == 1
    return snn.Leaky(beta=1.0, threshold=float(node.v_threshold.flat[0]), reset_mechanism="zero",
                     init_hidden=True, reset_delay=False)


def _snntorch(path: Path) -> torch.nn.Module:
    upstream = snntorch_nir._nir_to_snntorch_module
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snntorch_nir, "_nir_to_snntorch_module", lambda node, *a, **k: (
            _snntorch_if(node, upstream) if isinstance(node, nir.IF) else upstream(node, *a, **k)))
        module = snntorch_nir.import_from_nir(nir.read(str(path)))
    _batched_flatten(module)
    return module


def _topological(executor, graph) -> list:
    """Norse runs the graph with nirtorch's deprecated GraphExecutor, whose order is a depth-first
    preorder: a node with two incoming paths (a downsampling block's sum of branch and 1x1 shortcut)
    runs when the first path reaches it, before the other is computed, and the last node run (whose
    output is returned) need not be the graph's output. Patch: a topological order of the edges."""
    nodes = {n.name: n for n in executor.execution_order}
    position = {name: i for i, name in enumerate(nodes)}
    edges = [(a.replace(".", "_"), b.replace(".", "_")) for a, b in graph.edges]
    assert any(position[a] > position[b] for a, b in edges), "nirtorch's GraphExecutor now runs the edges in order"
    preds: dict[str, set[str]] = {name: set() for name in nodes}
    for a, b in edges:
        preds[b].add(a)
    return [nodes[name] for name in graphlib.TopologicalSorter(preds).static_order()]


def _norse(path: Path) -> torch.nn.Module:
    graph = nir.read(str(path))
    module = norse_torch.from_nir(graph, dt=NIR_DT, ignore_warnings=True)  # the card's dt
    _batched_flatten(module)
    module.execution_order = _topological(module, graph)
    return module


# A runtime: how it imports a file, and the export form it needs (Norse has no AvgPool2d node).
RUNTIMES = {"snntorch": (_snntorch, False), "norse": (_norse, True)}


def _logits(module: torch.nn.Module, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """T steps of the same images from the resting state, each runtime's state handed on, the outputs
    averaged. (snnTorch's neurons keep their potential inside the module: zeroed first.)"""
    for m in module.modules():
        if isinstance(m, snn.Leaky):
            m.reset_mem()
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(timesteps):
            out, state = module(x, state)
            outputs.append(out)
    return torch.stack(outputs).mean(0)


def _imported(model, runtime: str, folder: Path) -> torch.nn.Module:
    load, fold_pools = RUNTIMES[runtime]
    export_graph(model, RES, folder / "net.nir", fold_pools=fold_pools)
    return load(folder / "net.nir")


def _compare(model, x, module, timesteps: int):
    model.timesteps = timesteps
    with torch.no_grad():
        expected = model(x)
    got = _logits(module, x, timesteps)
    assert got.shape == expected.shape
    return got, expected


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A network and its file as a runtime imported it, once for both T."""
    cache: dict = {}

    def get(runtime: str, preset: str):
        if (runtime, preset) not in cache:
            model = trained_like(get_preset(preset).replace(stem="half"))
            cache[runtime, preset] = model, _imported(model, runtime, tmp_path_factory.mktemp(runtime))
        return cache[runtime, preset]
    return get


# ---------------------------------------------------------------- the round trips
@pytest.mark.parametrize("timesteps", [1, 4])
@pytest.mark.parametrize("preset", NETWORKS)
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_another_runtime_computes_the_snnas_logits(runtime, preset, timesteps, imported):
    model, module = imported(runtime, preset)
    got, expected = _compare(model, IMAGES, module, timesteps)
    assert (expected.std(0) > 1e-4).any(), "the outputs do not depend on the input: the comparison would be empty"
    assert torch.allclose(got, expected, atol=TOLERANCE), (got - expected).abs().max()


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_lif_neurons_run_in_another_runtime(runtime, tmp_path):
    model = trained_like(get_preset("pa_a_resnet18").replace(stem="half", neuron=Neuron(kind="lif", tau=3.0)))
    got, expected = _compare(model, IMAGES, _imported(model, runtime, tmp_path), 4)
    assert torch.allclose(got, expected, atol=TOLERANCE), (got - expected).abs().max()


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_potential_on_the_threshold_fires_as_in_snnas(runtime, tmp_path):
    model, x, expected, off_by_one_step = on_the_threshold(RES)
    assert all((expected - other).abs().max() > 1e-3 for other in off_by_one_step), "no spike hangs on the step"
    got = _logits(_imported(model, runtime, tmp_path), x, 1)
    assert torch.allclose(got, expected, atol=TOLERANCE), (got - expected).abs().max()


def test_norse_has_no_average_pool_so_it_gets_the_folded_form():
    # Norse 1.1.0 maps no AvgPool2d (its importer returns None and the node is dropped silently); the
    # folded form has none. This fails once Norse maps it, and the default form can be tested there too.
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    assert norse_nir._import_norse_module(pool) is None
    assert RUNTIMES["norse"][1] is True


def test_the_runtimes_are_the_pinned_ones():
    # The README's runtime table names these versions; the dev extra installs them for CI.
    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    pins = dict(p.split("==") for p in extras["nir-interop"] if "==" in p)
    assert pins == {"snntorch": version("snntorch"), "norse": version("norse")}
    assert set(extras["nir-interop"]) <= set(extras["dev"])
