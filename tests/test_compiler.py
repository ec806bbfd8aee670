import copy
import math
from contextlib import nullcontext

import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from snnas import build_model, count_parameters, get_preset, list_presets
from snnas.compiler import BLOCK_BUILDERS, register_block
from snnas.compiler.choices import STEM_LAYOUTS, TDBN_ALPHA_AT_SUM
from snnas.compiler.references import ZOO, ZooNet, load_by_position, relu_twin
from snnas.errors import GenotypeError
from snnas.genotype import Edge, Neuron
from snnas.genotype.vocabulary import BLOCK_NAMES, STEMS
from tests.devices import CUDA, DEVICES, exact_kernels
from tests.genotype_helpers import tiny

PRESETS = list_presets()


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_trains_tiny(name):
    """Forward and backward at 32 px, T=2, 1/16 width. The DenseNets take their `small` stem:
    behind the ImageNet stem their last stages run on 2x2 and 1x1 maps, where BN over a few
    spike counts amplifies gradients past float range (seen: x10 per layer)."""
    torch.manual_seed(0)
    g = get_preset(name)
    if name.startswith("sdensenet"):
        g = g.replace(stem="small")
    model = build_model(g, num_classes=5, in_channels=3, timesteps=2, width_mult=1 / 16)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("stem, side", [("imagenet", 7), ("small", 28), ("half", 14)])
def test_stem_kinds_set_the_first_stage_resolution(stem, side):
    assert set(STEM_LAYOUTS) == set(STEMS)
    model = build_model(get_preset("pa_a_resnet18").replace(stem=stem), num_classes=3, in_channels=1,
                        timesteps=2, width_mult=1 / 16)
    h = model.stem(torch.randn(2, 1, 28, 28), 2)
    assert h.shape == (2, 2, 4, side, side)  # T, N, C, H, W
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


RESNET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def expected_difference(block: str, depth: int) -> int:
    """Parameters a type adds or removes against torchvision's ResNet by moving BNs.

    pa_b pre-activates: in each stage's first block, whose input width differs from its output,
    the branch's first BN and the shortcut's BN act on the input channels where torchvision's
    act on the output channels (2 parameters per channel each): 4 x (in - out) per such block.
    baa keeps the BN count (its branch-end BN moves after the addition); the others match.
    """
    if block != "pa_b":
        return 0
    expansion = 1 if depth < 50 else 4
    diff, channels = 0, 64
    for width in (64, 128, 256, 512):
        out = width * expansion
        if channels != out:
            diff += 4 * (channels - out)
        channels = out
    return diff


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
@pytest.mark.parametrize("block", sorted(BLOCK_NAMES) + ["danet_a", "danet_b", "danet_c", "danet_d"])
def test_parameter_counts_match_table_vi(block, depth):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(f"{block}_resnet{depth}", num_classes=1000)
    base = block.replace("danet_a", "pa_a").replace("danet_b", "pa_b").replace("danet_c", "origin").replace("danet_d", "baa")
    assert count_parameters(model) == RESNET_PARAMS[depth] + expected_difference(base, depth)


@pytest.mark.parametrize("name,params", [("sdensenet121", 7_978_856), ("sdensenet161", 28_681_000),
                                         ("sdensenet201", 20_013_928)])
def test_densenet_parameter_counts_match_torchvision(name, params):
    with torch.device("meta"):
        assert count_parameters(build_model(name, num_classes=1000)) == params


# Under autocast both networks run the same kernels on the same spikes: the stem ends in a spiking
# neuron, so a rounding difference (snnas runs the stem once on N images, SpikingJelly on T x N
# copies) either flips a spike, which moves the logits by tenths, or changes nothing downstream.
# AMP therefore keeps the float32 tolerance.
ZOO_ATOL = 1e-5
PRECISIONS = [pytest.param("cpu", None, id="cpu"), pytest.param("cuda", None, id="cuda", marks=CUDA),
              pytest.param("cuda", torch.float16, id="cuda-float16", marks=CUDA),
              pytest.param("cuda", torch.bfloat16, id="cuda-bfloat16", marks=CUDA)]


@pytest.mark.parametrize("device, amp", PRECISIONS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_matches_spikingjelly_model_zoo(name, device, amp):
    torch.manual_seed(0)
    ref = ZooNet(name, timesteps=2)
    model = build_model(name, num_classes=1000, timesteps=2)
    assert count_parameters(model) == count_parameters(ref)
    load_by_position(model, ref)
    model.to(device), ref.to(device)
    x = torch.randn(2, 3, 48, 48, device=device)
    with exact_kernels(device), torch.no_grad():
        for mode in ("train", "eval"):
            model.train(mode == "train")
            ref.train(mode == "train")
            with torch.autocast(device_type=device, dtype=amp) if amp else nullcontext():
                ours, expected = model(x), ref(x)
            torch.testing.assert_close(ours, expected, atol=ZOO_ATOL, rtol=0)


def test_zoo_weights_load_only_into_the_same_layout():
    zoo = ZooNet("sew_resnet18")
    with pytest.raises(ValueError, match="tensors"):
        load_by_position(build_model("sew_resnet34", width_mult=1 / 16), zoo)
    with pytest.raises(ValueError, match="shape"):
        load_by_position(build_model("sew_resnet18", width_mult=1 / 16), zoo)
    with pytest.raises(ValueError, match="no SpikingJelly model"):
        ZooNet("pa_a_resnet18")


def test_relu_twin_is_the_same_network_with_relu_for_every_neuron():
    torch.manual_seed(0)
    model = build_model(tiny("origin", "dense_add", depth=2), num_classes=4, timesteps=2).eval()
    x = torch.randn(3, 3, 16, 16)
    before = model(x)
    twin = relu_twin(model)
    assert not any(isinstance(m, neuron.BaseNode) for m in twin.modules()) and twin.timesteps == 1
    assert sum(isinstance(m, torch.nn.ReLU) for m in twin.modules()) == \
        sum(isinstance(m, neuron.BaseNode) for m in model.modules())
    torch.testing.assert_close(model(x), before, atol=0, rtol=0)  # the original keeps its neurons
    ours, theirs = model.state_dict(), twin.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    stem = twin.stem
    torch.testing.assert_close(stem(x, 1)[0], torch.relu(stem.bn(stem.conv(x))))  # ReLU where the SN was
    assert not torch.allclose(twin(x), before)


# Dense addition is pinned exactly on every device: the networks compared run the same kernels on
# the same shapes in the same order, so even on CUDA they agree to the last bit.
def _shared_weights(a, b, device="cpu"):
    b.load_state_dict(a.state_dict())
    a.to(device).eval(), b.to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", ["sew", "pa_a", "pa_b"])
def test_dense_add_equals_chain_without_interblock(block, device):
    torch.manual_seed(0)
    dense = build_model(tiny(block, "dense_add", depth=3), num_classes=4, timesteps=2)
    chain = build_model(tiny(block, "chain", depth=3), num_classes=4, timesteps=2)
    _shared_weights(dense, chain, device)
    x = torch.randn(3, 3, 16, 16).to(device)
    with exact_kernels(device):
        torch.testing.assert_close(dense(x), chain(x), atol=0, rtol=0)
    assert dense.genotype.canonical().key == chain.genotype.canonical().key


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", ["origin", "baa"])
def test_dense_add_differs_from_chain_with_interblock(block, device):
    torch.manual_seed(0)
    dense = build_model(tiny(block, "dense_add", depth=3), num_classes=4, timesteps=2)
    chain = build_model(tiny(block, "chain", depth=3), num_classes=4, timesteps=2)
    _shared_weights(dense, chain, device)
    x = (torch.randn(3, 3, 16, 16) * 3).to(device)
    with exact_kernels(device):
        assert not torch.allclose(dense(x), chain(x))
    assert dense.genotype.canonical().key != chain.genotype.canonical().key


@pytest.mark.parametrize("device", DEVICES)
def test_dense_add_follows_listing_1(device):
    """DANet-C stage: block i reads the sum of all earlier outputs; the stage returns their sum."""
    torch.manual_seed(0)
    model = build_model(tiny("origin", "dense_add", depth=3, stages=1), num_classes=4, timesteps=1).to(device).eval()
    stage = model.stages[0]
    x = torch.randn(2, 3, 16, 16).to(device)
    with exact_kernels(device):
        functional.reset_net(model)
        h = model.stem(x, 1)
        features = [stage.blocks[0](h)[0]]
        for block in stage.blocks[1:]:
            features.append(block(sum(features))[0])
        functional.reset_net(model)
        torch.testing.assert_close(stage(model.stem(x, 1)), sum(features), atol=0, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", ["origin", "pa_a"])
def test_explicit_edges_equal_named_patterns(block, device):
    torch.manual_seed(0)
    for connect in ("chain", "dense_add"):
        from snnas.genotype import expand_edges

        named = build_model(tiny(block, connect, stages=1), num_classes=4, timesteps=2)
        explicit = build_model(tiny(block, "edges", edges=expand_edges(connect, 3), stages=1), num_classes=4,
                               timesteps=2)
        _shared_weights(named, explicit, device)
        x = (torch.randn(2, 3, 16, 16) * 2).to(device)
        with exact_kernels(device):
            torch.testing.assert_close(named(x), explicit(x), atol=0, rtol=0)


def test_concat_edges_and_dense_concat_build():
    edges = (Edge(-1, 0, "add"), Edge(0, 1, "add"), Edge(0, 2, "concat"), Edge(1, 2, "add"), Edge(2, 3, "add"))
    model = build_model(tiny("pa_a", "edges", edges=edges), num_classes=3, timesteps=1)
    block2 = model.stages[0].blocks[2]
    assert block2.branch.conv1.in_channels == 16 and block2.shortcut is not None  # 8 summed + 8 concatenated
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    dc = build_model(tiny("origin", "dense_concat", depth=2, stages=1), num_classes=3)
    assert [b.branch.conv1.in_channels for b in dc.stages[0].blocks] == [8, 16]
    assert dc.stage_channels == [8 + 8 + 8]


# One preset per block type, and the DenseNet layer.
STEP_PRESETS = ["origin_resnet18", "tdbn_resnet18", "baa_resnet18", "sew_resnet18", "pa_a_resnet18",
                "pa_b_resnet18", "danet_c_resnet18", "sdensenet121"]


@pytest.mark.parametrize("name", STEP_PRESETS)
def test_multi_step_equals_single_step_loop(name):
    torch.manual_seed(0)
    T = 3
    model = build_model(name, num_classes=4, timesteps=T, width_mult=1 / 16).eval()
    x = torch.randn(2, 3, 32, 32)
    single = copy.deepcopy(model)
    multi = model(x)
    functional.set_step_mode(single, "s")
    functional.reset_net(single)
    outs = []
    for _ in range(T):
        h = single.stem(x, None)
        for stage in single.stages:
            h = stage(h)
        outs.append(single.head(h))
    torch.testing.assert_close(multi, torch.stack(outs).mean(0), atol=1e-6, rtol=1e-5)


def test_state_is_reset_between_calls_and_timesteps_change():
    model = build_model("pa_a_resnet18", num_classes=4, timesteps=2, width_mult=1 / 16).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
    model.timesteps = 1
    one = model(x)
    model.timesteps = 4
    four = model(x)
    assert one.shape == four.shape and not torch.equal(one, four)
    with pytest.raises(ValueError):
        model.timesteps = 0


def test_return_stages_and_labels():
    model = build_model("danet_c_resnet18", num_classes=4, timesteps=2, width_mult=1 / 16)
    logits, stages = model(torch.randn(2, 3, 32, 32), return_stages=True)
    assert [s.shape[2] for s in stages] == model.stage_channels
    assert all(s.shape[0] == 2 for s in stages)
    names = {n: m for n, m in model.named_modules() if isinstance(m, neuron.BaseNode)}
    assert "stem.sn" in names and "stages.1.blocks.0.branch.sn1" in names and "stages.1.blocks.0.interblock.sn" in names
    m = names["stages.2.blocks.1.interblock.sn"]
    assert (m.snnas_stage, m.snnas_block, m.snnas_position) == (2, 1, "interblock.sn")
    assert names["stem.sn"].snnas_stage is None and names["stem.sn"].snnas_position == "stem.sn"


def test_each_neuron_has_its_own_surrogate_and_settings():
    model = build_model(tiny("origin", neuron=Neuron(kind="lif", tau=3.0)), num_classes=2)
    neurons = [m for m in model.modules() if isinstance(m, neuron.BaseNode)]
    assert all(isinstance(m, neuron.LIFNode) and m.tau == 3.0 and m.detach_reset for m in neurons)
    assert len({id(m.surrogate_function) for m in neurons}) == len(neurons)
    assert all(m.surrogate_function.alpha == 4.0 for m in neurons)


def test_stems_and_heads_fit_the_value_kind():
    assert build_model("pa_a_resnet18").stem.sn is None and build_model("pa_b_resnet18").stem.sn is None
    assert build_model("origin_resnet18").stem.sn is not None and build_model("sew_resnet18").stem.sn is not None
    dn = build_model("sdensenet121")
    assert dn.stem.sn is not None and dn.head.bn is not None
    assert build_model("origin_resnet18").head.bn is None
    small = build_model(tiny("origin"), num_classes=2)
    assert small.stem.conv.kernel_size == (3, 3) and small.stem.pool is None


def test_tdbn_initialises_bns_at_the_sum():
    model = build_model("tdbn_resnet18", width_mult=1 / 16)
    block = model.stages[1].blocks[0]
    assert torch.allclose(block.branch.bn2.weight, torch.full_like(block.branch.bn2.weight, TDBN_ALPHA_AT_SUM))
    assert torch.allclose(block.shortcut.bn.weight, torch.full_like(block.shortcut.bn.weight, TDBN_ALPHA_AT_SUM))
    assert torch.all(block.branch.bn1.weight == 1.0)
    plain = build_model("origin_resnet18", width_mult=1 / 16).stages[1].blocks[0]
    assert torch.all(plain.branch.bn2.weight == 1.0)


def test_block_registry_rejects_duplicates():
    assert set(BLOCK_BUILDERS) == {"basic", "bottleneck", "dense"}
    with pytest.raises(ValueError, match="already registered"):
        register_block("basic")(lambda ctx: None)


def test_build_model_accepts_every_spec_form(tmp_path):
    g = get_preset("sew_resnet18")
    path = tmp_path / "g.json"
    path.write_text(g.to_json())
    for spec in (g, "sew_resnet18", g.to_str(), str(path), path):
        assert build_model(spec, num_classes=3, width_mult=1 / 16).genotype == g
    for bad in ("nope", str(tmp_path / "missing.json"), 42):
        with pytest.raises(GenotypeError):
            build_model(bad)
    with pytest.raises(GenotypeError, match="width_mult"):
        build_model(g, width_mult=0)


def test_width_mult_scales_channels():
    model = build_model("origin_resnet18", width_mult=0.25, num_classes=10)
    assert model.stage_channels == [16, 32, 64, 128] and model.build_kwargs()["width_mult"] == 0.25
    assert math.isclose(count_parameters(model) / count_parameters(build_model("origin_resnet18", num_classes=10)),
                        1 / 16, rel_tol=0.05)
