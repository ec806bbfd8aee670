"""NIR export: a round trip through the file for every exportable block type, and each refusal."""
from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from snnas import Genotype, build_model, get_preset
from snnas.cli import main
from snnas.genotype import Neuron
from snnas.nir_export import NirError, export_graph, node_summary, run_graph

nir = pytest.importorskip("nir")

TOLERANCE = 1e-5  # on logits: the folded BatchNorms change the float rounding, never a spike here
RES = 16
# One preset per block type (the six connections, the bottleneck) and the dense additions.
EXPORTABLE = ["origin_resnet18", "tdbn_resnet18", "baa_resnet18", "sew_resnet18", "pa_a_resnet18", "pa_b_resnet18",
              "sew_resnet50", "danet_c_resnet18", "danet_d_resnet18"]


def trained_like(genotype: Genotype, timesteps: int = 2, seed: int = 0):
    """A tiny network with BN statistics that are not the initial ones, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(genotype, num_classes=5, in_channels=1, timesteps=timesteps, width_mult=0.0625)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, RES, RES) * 2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # affine parameters away from 1 and 0 too
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.4)
    return model.eval()


def _round_trip(model, tmp_path, timesteps: int):
    x = torch.randn(6, 1, RES, RES) * 2
    with torch.no_grad():
        expected = model(x)
    path = tmp_path / "net.nir"
    graph = export_graph(model, RES, path)
    back = nir.read(str(path))  # the file alone, as another tool would read it
    assert set(back.nodes) == set(graph.nodes)
    got = run_graph(path, x, timesteps)
    return expected, got, graph


@pytest.mark.parametrize("preset", EXPORTABLE)
def test_round_trip_through_a_nir_file_matches_the_network(preset, tmp_path):
    model = trained_like(get_preset(preset).replace(stem="half"))
    expected, got, graph = _round_trip(model, tmp_path, model.timesteps)
    assert got.shape == expected.shape == (6, 5)
    assert (expected.std(0) > 1e-4).any(), "the outputs do not depend on the input: the comparison would be empty"
    assert torch.allclose(got, expected, atol=TOLERANCE), (got - expected).abs().max()
    summary = node_summary(graph)
    assert summary["nodes"] == len(graph.nodes) and summary["by_block"]["stage 1 block 1"] >= 3
    assert summary["by_block"]["input"] == 1 and summary["by_block"]["output"] == 1


def _max_fan_in(preset: str) -> int:
    graph = export_graph(trained_like(get_preset(preset).replace(stem="half")), RES)
    fan_in: dict[str, int] = {}
    for _, dst in graph.edges:
        fan_in[dst] = fan_in.get(dst, 0) + 1
    return max(fan_in.values())


def test_dense_addition_is_edges_into_one_node():
    # ResNet-34's stages have 3-6 blocks: dense addition sums all their contributions into one node,
    # the chain only ever adds a branch and its identity
    assert _max_fan_in("danet_c_resnet34") >= 3 and _max_fan_in("origin_resnet34") == 2


def test_lif_neurons_keep_tau_and_round_trip(tmp_path):
    g = get_preset("pa_a_resnet18").replace(stem="half", neuron=Neuron(kind="lif", tau=3.0))
    model = trained_like(g, timesteps=3)
    expected, got, graph = _round_trip(model, tmp_path, 3)
    assert torch.allclose(got, expected, atol=TOLERANCE)
    lifs = [n for n in graph.nodes.values() if isinstance(n, nir.LIF)]
    assert lifs and all(float(n.v_threshold.flat[0]) == 1.0 for n in lifs)


@pytest.mark.parametrize("genotype, layer", [
    (get_preset("sew_resnet18"), "stem.pool"),  # the ImageNet stem: max-pooling
    (get_preset("sdensenet121").replace(stem="half"), "stages.0.blocks.0 concatenates"),
    (get_preset("origin_resnet18").replace(stem="half", neuron=Neuron(v_reset=None)), "soft reset"),
])
def test_what_nir_cannot_express_is_refused_naming_the_layer(genotype, layer):
    model = build_model(genotype, num_classes=5, in_channels=1, width_mult=0.0625).eval()
    with pytest.raises(NirError, match=layer.replace(".", r"\.")):
        export_graph(model, RES)


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_the_nir_command_writes_a_readable_file(tmp_path):
    path = tmp_path / "net.nir"
    code, out, err = _cli(["nir", "danet_a_resnet18", "--out", str(path), "--resolution", "16", "--width-mult", "0.0625"])
    assert code == 0, err
    assert "NIR nodes" in out and "stage 4 block 2" in out
    assert len(nir.read(str(path)).nodes) > 20
    code, _, err = _cli(["nir", "sew_resnet18", "--out", str(path), "--resolution", "224", "--width-mult", "0.0625"])
    assert code == 2 and "stem.pool" in err and err.count("\n") == 1
    code, _, err = _cli(["nir", "danet_a_resnet18", "--out", str(tmp_path)])
    assert code == 2 and "--out" in err
