"""The window-recurrent neuron `gwr`: what it computes (by hand), that it is IF without its carry,
the genotype forms, every block type, the counts and the search."""
from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from optuna.trial import TrialState
from spikingjelly.activation_based import functional, neuron, surrogate

from snnas import Genotype, build_model
from snnas.cli import main
from snnas.compiler.gwr import GWRNode, axis_windows
from snnas.data import load_splits
from snnas.errors import GenotypeError
from snnas.fit import FitSettings
from snnas.genotype import Neuron
from snnas.metrics import count_ops, firing_rates, gradient_stability
from snnas.metrics.energy import energy_mj
from snnas.nir_export import NirError, deployable
from snnas.search.dedupe import Dedupe
from snnas.search.fidelity import Fidelity
from snnas.search.leaderboard import build_leaderboard, format_markdown, format_terminal
from snnas.search.objective import SearchObjective
from snnas.spaces import load_space

LAM, THETA = 0.4, math.pi / 4


def node(**kw) -> GWRNode:
    kw.setdefault("detach_reset", True)
    return GWRNode(step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0), **kw)


def if_node() -> neuron.IFNode:
    return neuron.IFNode(step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0), detach_reset=True)


def omega(a: float, b: float, v_th: float = 1.0) -> float:
    """The projection by hand: 2s·sin(θ·(a/s)·cos(θ·b/s)), s = 2·V_th."""
    s = 2 * v_th
    return 2 * s * math.sin(THETA * (a / s) * math.cos(THETA * b / s))


# ---------------------------------------------------------------- windows
@pytest.mark.parametrize("side, plain, dilated", [
    (28, ((0, 14), 14), ((0, 7), 21)),  # the code's quadrants and 3/4-side windows
    (14, ((0, 7), 7), ((0, 3), 11)),
    (7, ((0, 3), 4), ((0, 1), 6)),  # odd: plain windows share the middle line
    (4, ((0, 2), 2), ((0, 1), 3)),
    (2, ((0, 1), 1), ((0, 0), 2)),
    (1, ((0,), 1), ((0,), 1)),  # below g: one window
])
def test_windows_cover_odd_and_tiny_maps(side, plain, dilated):
    for dil, (starts, width) in ((False, plain), (True, dilated)):
        axis = axis_windows(side, 2, dil)
        assert (axis.starts, axis.width) == (starts, width)
        assert set(range(side)) == {p for s in axis.starts for p in range(s, s + axis.width)}


# ---------------------------------------------------------------- without the carry it is IF
@pytest.mark.parametrize("dilated", [False, True])
@pytest.mark.parametrize("shape", [(1, 4, 3, 14, 14), (3, 4, 3, 7, 7), (2, 3, 2, 4, 4), (1, 2, 2, 2, 2),
                                   (2, 2, 2, 1, 1), (2, 2, 3, 5, 3)])
def test_lam_zero_is_if_exactly(shape, dilated):
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_(True)
    x_if = x.detach().clone().requires_grad_(True)
    ours, ref = node(lam=0.0, dilated=dilated), if_node()
    out, expected = ours(x), ref(x_if)
    assert torch.equal(out, expected) and torch.equal(ours.v, ref.v)
    assert 0 < out.mean() < 1
    out.sum().backward()
    expected.sum().backward()
    assert torch.allclose(x.grad, x_if.grad, atol=1e-6)


BLOCK_STAGES = {  # every block type, on maps of 14, 7, 4, 2 and 1 px (3 px for the DenseNet)
    **{b: "|".join(f"basic.{b}.{w}x1.s{s}.chain" for w, s in ((4, 1), (4, 2), (8, 2), (8, 2), (8, 2)))
       for b in ("origin", "tdbn", "baa", "sew", "pa_a", "pa_b")},
    "bottleneck": "|".join(f"bottleneck.origin.2x1.s{s}.chain" for s in (1, 2, 2, 2, 2)),
    "dense": "|".join(["dense.densenet.4x1.s1.dense_concat.pool"] * 3 + ["dense.densenet.4x1.s1.dense_concat"]),
}


def _pair(block: str, neuron_field: str, timesteps: int):
    torch.manual_seed(0)
    ours = build_model(f"{neuron_field}|half4|{BLOCK_STAGES[block]}", num_classes=5, in_channels=1,
                       timesteps=timesteps)
    torch.manual_seed(0)
    ref = build_model(f"if|half4|{BLOCK_STAGES[block]}", num_classes=5, in_channels=1, timesteps=timesteps)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("block", sorted(BLOCK_STAGES))
def test_a_whole_network_without_the_carry_is_the_if_network(block):
    ours, ref = _pair(block, "gwr(dil=on,lam=0)", timesteps=2)
    n_gwr = sum(isinstance(m, GWRNode) for m in ours.modules())
    assert n_gwr and n_gwr == sum(isinstance(m, neuron.IFNode) for m in ref.modules())
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ours(x), ref(x))


@pytest.mark.parametrize("block", sorted(BLOCK_STAGES))
def test_every_block_type_builds_runs_and_is_seen_by_the_monitors(block):
    model, _ = _pair(block, "gwr", timesteps=1)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    logits = model(x)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(p.grad is not None for p in model.parameters())
    nodes = {n for n, m in model.named_modules() if isinstance(m, GWRNode)}
    assert nodes and set(firing_rates(model, x).rates) == nodes
    grad = gradient_stability(model, x).values
    assert set(grad) == nodes and all(0 < v <= 1 for v in grad.values())
    functional.reset_net(model)
    assert all(m.v == 0.0 and m.h_seq is None for m in model.modules() if isinstance(m, GWRNode))


def test_dil_alt_dilates_every_other_neuron_layer_in_build_order():
    for _ in range(2):  # each network numbers its own layers from 0
        model = build_model(f"gwr|half4|{BLOCK_STAGES['sew']}", num_classes=5, in_channels=1)
        nodes = [m for m in model.modules() if isinstance(m, GWRNode)]
        assert [m.layer_index for m in nodes] == list(range(len(nodes)))
        assert [m.dilated for m in nodes] == [i % 2 == 1 for i in range(len(nodes))]
    for dil, expected in (("on", True), ("off", False)):
        model = build_model(f"gwr(dil={dil})|half4|{BLOCK_STAGES['sew']}", num_classes=5, in_channels=1)
        assert {m.dilated for m in model.modules() if isinstance(m, GWRNode)} == {expected}


# ---------------------------------------------------------------- what it computes, by hand
X_HAND = [[0.9, 1.2, 0.2, 0.8],
          [-0.5, 0.3, 0.6, -1.0],
          [1.5, -0.2, 0.7, 0.4],
          [0.1, 0.95, -0.3, 0.5]]
QUADRANTS = [(0, 0), (0, 2), (2, 0), (2, 2)]  # TL, TR, BL, BR


def _crop(rows, r0, c0, side=2):
    return [row[c0:c0 + side] for row in rows[r0:r0 + side]]


@pytest.mark.parametrize("proj", ["sincos", "mean", "none"])
def test_four_windows_carry_their_membranes_by_hand(proj):
    n = node(dilated=False, proj=proj)
    n.store_v_seq = True
    x = torch.tensor(X_HAND, dtype=torch.float64).view(1, 1, 1, 4, 4)
    out = n(x)
    carry = {"sincos": lambda a, b: LAM * omega(a, b), "mean": lambda a, b: LAM * (a + b) / 2,
             "none": lambda a, b: LAM * b}[proj]
    u_prev = i_prev = None
    spikes = [[0.0] * 4 for _ in range(4)]
    for k, (r0, c0) in enumerate(QUADRANTS):
        i = _crop(X_HAND, r0, c0)
        u = [[i[a][b] + (carry(i_prev[a][b], u_prev[a][b]) if k else 0.0) for b in range(2)] for a in range(2)]
        got = n.h_seq[0, 0, 4 * k:4 * k + 4].view(2, 2)
        assert torch.allclose(got, torch.tensor(u, dtype=torch.float64), rtol=0, atol=1e-12), (k, got, u)
        for a in range(2):
            for b in range(2):
                spikes[r0 + a][c0 + b] = float(u[a][b] >= 1.0)
        u_prev, i_prev = u, i
    assert torch.equal(out[0, 0, 0], torch.tensor(spikes, dtype=torch.float64))
    # the second window is not IF: at (0, 3) the carry lifts 0.8 over the threshold with sincos
    if proj == "sincos":
        assert out[0, 0, 0, 0, 3] == 1.0 and X_HAND[0][3] < 1.0


@pytest.mark.parametrize("condense", ["or", "mean"])
def test_dilated_windows_condense_exactly_where_they_overlap(condense):
    n = node(dilated=True, condense=condense)
    n.store_v_seq = True
    x = torch.randn(1, 2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 1.5
    out = n(x)
    corners = [(0, 0), (0, 1), (1, 0), (1, 1)]  # 3 x 3 windows on a 4 x 4 map
    u = n.h_seq[0].view(2, 4, 3, 3, 3).transpose(0, 1)  # [window, N, C, 3, 3]
    first, second = x[0, ..., 0:3, 0:3], x[0, ..., 0:3, 1:4]
    assert torch.equal(u[0], first)
    assert torch.allclose(u[1], second + LAM * 4 * torch.sin(THETA / 2 * first * torch.cos(THETA / 2 * u[0])))
    fired = (u >= 1.0).double()
    placed = torch.zeros(4, 2, 3, 4, 4, dtype=torch.float64)
    for k, (r0, c0) in enumerate(corners):
        placed[k, ..., r0:r0 + 3, c0:c0 + 3] = fired[k]
    covered = torch.zeros(4, 4, 4)
    for k, (r0, c0) in enumerate(corners):
        covered[k, r0:r0 + 3, c0:c0 + 3] = 1
    count = covered.sum(0).double()
    expected = placed.amax(0) if condense == "or" else placed.sum(0) / count
    assert torch.equal(out[0], expected)
    assert count[1, 1] == 4 and count[0, 1] == 2  # the centre has four windows, the edges two
    after = torch.zeros_like(placed)
    for k, (r0, c0) in enumerate(corners):
        after[k, ..., r0:r0 + 3, c0:c0 + 3] = u[k] * (1 - fired[k])
    assert torch.allclose(n.v, after.sum(0) / count, atol=1e-12)  # the membrane: the windows' mean


def test_overlapping_windows_disagree_so_the_condense_matters():
    x = torch.randn(1, 4, 8, 4, 4, generator=torch.Generator().manual_seed(5)) * 1.5
    assert not torch.equal(node(dilated=True, condense="or")(x), node(dilated=True, condense="mean")(x))


def test_gradients_reach_the_first_window_through_the_carry():
    for lam, reaches in ((0.4, True), (0.0, False)):
        x = torch.tensor(X_HAND, dtype=torch.float64).view(1, 1, 1, 4, 4).requires_grad_(True)
        out = node(dilated=False, lam=lam)(x)
        out[..., 0:2, 2:4].sum().backward()  # the second window's (TR) spikes only
        assert bool(x.grad[..., 0:2, 0:2].abs().sum() > 0) == reaches  # the first window (TL)
        assert x.grad[..., 2:4, :].abs().sum() == 0  # the later windows do not feed it


def test_multi_step_is_a_loop_of_single_steps():
    x = torch.randn(3, 2, 3, 7, 7, generator=torch.Generator().manual_seed(6)) * 1.5
    multi = node(dilated=True)
    single = node(dilated=True)
    functional.set_step_mode(single, "s")
    out = multi(x)
    steps = torch.stack([single(x_t) for x_t in x])
    assert torch.equal(out, steps) and torch.equal(multi.v, single.v)
    one_by_one = node(dilated=True)
    assert torch.equal(torch.cat([one_by_one(x_t.unsqueeze(0)) for x_t in x]), out)  # state carries over calls
    assert not torch.equal(out[1], node(dilated=True)(x[1:2])[0])  # ... and matters


def test_an_image_batch_is_one_step_and_a_non_map_input_is_if():
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(7)) * 1.5
    assert torch.equal(node()(x), node()(x.unsqueeze(0))[0])
    flat = torch.randn(2, 4, 10, generator=torch.Generator().manual_seed(8)) * 1.5  # [T, N, features]
    assert torch.equal(node()(flat), if_node()(flat))
    assert node().neuron_mac_ops(flat.shape) == 0


# ---------------------------------------------------------------- the genotype
def test_genotype_forms_round_trip_and_defaults_are_not_printed():
    stages = "basic.pa_b.16x2.s1.chain|basic.pa_b.32x2.s2.chain"
    g = Genotype.from_str(f"gwr(g=2,dil=alt)|half16|{stages}")
    assert g.neuron == Neuron(kind="gwr") and g.to_str() == f"gwr|half16|{stages}"
    text = f"gwr(vth=0.5,g=3,dil=on,lam=0.25,theta=0.5,proj=mean,condense=mean)|half16|{stages}"
    g = Genotype.from_str(text)
    assert g.to_str() == text and Genotype.from_str(g.to_str()) == g and Genotype.from_json(g.to_json()) == g
    assert json.loads(g.to_json())["neuron"] == {
        "kind": "gwr", "v_threshold": 0.5, "v_reset": 0.0, "tau": 2.0, "surrogate_alpha": 4.0, "detach_reset": True,
        "g": 3, "dil": "on", "lam": 0.25, "theta": 0.5, "proj": "mean", "condense": "mean"}
    # the key is pinned: studies and the ground-truth table find networks by it
    assert Genotype.from_str(f"gwr|half16|{stages}").key == "9bff65cb471e7b33"
    assert Genotype.from_str(f"gwr(tau=3)|half16|{stages}").canonical() == Genotype.from_str(f"gwr|half16|{stages}")
    # IF and LIF genotypes keep exactly the JSON (and so the keys) they had before gwr existed
    for field, key in (("if", "8dd19fd29a914b84"), ("lif(tau=3)", "e70d81f19851bf4c")):
        g = Genotype.from_str(f"{field}|half16|{stages}")
        assert set(json.loads(g.to_json())["neuron"]) == {"kind", "v_threshold", "v_reset", "tau", "surrogate_alpha",
                                                         "detach_reset"}
        assert g.key == key


@pytest.mark.parametrize("spec, field", [
    ("gwr(g=0)", "neuron.g"), ("gwr(g=2.5)", "neuron.g"), ("gwr(dil=maybe)", "neuron.dil"),
    ("gwr(lam=-1)", "neuron.lam"), ("gwr(lam=x)", "neuron.lam"), ("gwr(theta=0)", "neuron.theta"),
    ("gwr(proj=tanh)", "neuron.proj"), ("gwr(condense=sum)", "neuron.condense"), ("if(g=3)", "neuron.g"),
    ("lif(dil=on)", "neuron.dil"),
])
def test_bad_settings_are_one_line_naming_the_field(spec, field):
    with pytest.raises(GenotypeError) as info:
        Genotype.from_str(f"{spec}|half16|basic.pa_b.16x2.s1.chain")
    assert str(info.value).startswith(f"{field}:") and "\n" not in str(info.value)


def test_bad_settings_in_json_name_the_field():
    doc = json.loads(Genotype.from_str("if|half16|basic.pa_b.16x2.s1.chain").to_json())
    doc["neuron"]["dil"] = "on"
    with pytest.raises(GenotypeError, match=r"^neuron\.dil: 'on' is not allowed"):
        Genotype.from_dict(doc)


# ---------------------------------------------------------------- counted honestly
COUNTED = "half4|basic.sew.4x1.s1.chain"  # 16 px -> three neuron layers of 4 x 8 x 8, each in 2 x 2 windows


def test_neuron_macs_by_hand_and_in_the_energy():
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(0)
    model = build_model(f"gwr|{COUNTED}", num_classes=5, in_channels=1, timesteps=2)
    ops = count_ops(model, x)
    # windows of the 8 px maps: plain 4 x 4 (layer 0 and 2), dilated 6 x 6 (layer 1, dil=alt);
    # the 3 windows after the first each cost 6 MACs (sincos) per element, 4 channels, T = 2
    per_step = 3 * 4 * 6 * (4 * 4 + 6 * 6 + 4 * 4)
    assert ops.neuron_mac_ops == 2 * per_step
    assert ops.neuron_by_layer == {"stem.sn": 2 * 3 * 4 * 6 * 16,
                                   "stages.0.blocks.0.branch.sn1": 2 * 3 * 4 * 6 * 36,
                                   "stages.0.blocks.0.branch.sn2": 2 * 3 * 4 * 6 * 16}
    assert ops.energy_mj == energy_mj(ops.mac_ops + ops.neuron_mac_ops, ops.sops) > energy_mj(ops.mac_ops, ops.sops)
    assert ops.to_dict()["neuron_mac_ops"] == ops.neuron_mac_ops
    torch.manual_seed(0)
    mean = count_ops(build_model(f"gwr(proj=mean)|{COUNTED}", num_classes=5, in_channels=1, timesteps=2), x)
    assert mean.neuron_mac_ops == 2 * per_step / 6
    torch.manual_seed(0)
    off = count_ops(build_model(f"gwr(lam=0)|{COUNTED}", num_classes=5, in_channels=1, timesteps=2), x)
    torch.manual_seed(0)
    ref = count_ops(build_model(f"if|{COUNTED}", num_classes=5, in_channels=1, timesteps=2), x)
    assert off.neuron_mac_ops == 0 and (off.sops, off.mac_ops) == (ref.sops, ref.mac_ops)


def test_if_and_lif_networks_report_no_neuron_macs_and_their_energy_is_unchanged():
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    for field in ("if", "lif"):
        ops = count_ops(build_model(f"{field}|{COUNTED}", num_classes=5, in_channels=1, timesteps=2), x)
        assert ops.neuron_mac_ops == 0 and ops.neuron_by_layer == {}
        assert ops.energy_mj == energy_mj(ops.mac_ops, ops.sops) > 0


def test_the_output_stays_binary_so_sops_stay_events_times_fan_out():
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(0)
    model = build_model(f"gwr(dil=on)|{COUNTED}", num_classes=5, in_channels=1, timesteps=1)
    spikes = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: spikes.__setitem__(n, out))
             for n, m in model.named_modules() if isinstance(m, GWRNode)]
    ops = count_ops(model, x)
    for h in hooks:
        h.remove()
    assert all(set(s.unique().tolist()) <= {0.0, 1.0} for s in spikes.values())
    conv2 = ops.by_layer["stages.0.blocks.0.branch.conv2"]  # 3 x 3 conv, 4 -> 4 channels, padding 1
    ones = torch.nn.functional.conv2d(spikes["stages.0.blocks.0.branch.sn1"][0], torch.ones(1, 4, 3, 3), padding=1)
    assert conv2["mac_ops"] == 0 and conv2["sops"] == ones.sum().item() * 4 / 3


def test_nir_export_refuses_it_naming_the_layer():
    model = build_model(f"gwr|{COUNTED}", num_classes=5, in_channels=1).eval()
    with pytest.raises(NirError, match=r"^stem\.sn: the gwr neuron"):
        deployable(model, 16)


# ---------------------------------------------------------------- the command line and the search
def test_show_and_inspect_a_gwr_genotype(capsys):
    spec = "gwr(g=2)|half16|basic.pa_b.16x2.s1.chain|basic.pa_b.32x2.s2.chain"
    assert main(["show", spec]) == 0
    out = capsys.readouterr().out
    assert "gwr|half16|basic.pa_b.16x2.s1.chain|basic.pa_b.32x2.s2.chain" in out
    small = ["--resolution", "28", "--timesteps", "1", "--batch-size", "4", "--in-channels", "1", "--width-mult", "0.5"]
    assert main(["inspect", spec, *small, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["neuron_mac_ops"] > 0 and len(result["firing_rates"]) == len(result["grad_stability"]) == 9
    assert main(["inspect", spec, "if" + spec[8:], *small]) == 0
    out = capsys.readouterr().out
    assert out.count("  neurons ") == 1 and "MACs per image over 1 steps (the gwr neuron's carry" in out


WIRING_GWR = """
name = "wiring_gwr"
builder = "wiring"
[fixed]
stem = "small"
[genes]
neuron = ["gwr"]
width = ["16"]
depth = ["1"]
block = ["conv_bn_sn_conv_bn_sn/none/bn", "bn_sn_conv_bn_sn_conv/none/bn"]
edge = ["none"]
"""


def test_the_wiring_space_offers_gwr():
    space = load_space("wiring", resolution=28)
    assert space.context.genes["neuron"] == ("if", "lif", "gwr") and space.seeds()
    trial = optuna.trial.FixedTrial({**dict(space.seeds()[0][1]), "neuron": "gwr"})
    assert space.suggest(trial).neuron == Neuron(kind="gwr")


def test_a_wiring_search_samples_and_trains_gwr(tmp_path):
    """Four trials of a wiring space whose neuron gene is gwr (the sampler cannot avoid it)."""
    space_file = tmp_path / "wiring_gwr.toml"
    space_file.write_text(WIRING_GWR)
    fit = FitSettings(recipe="proxy", epochs=(1,), timesteps=(1,), width_mult=0.0625, batch_size=16)
    fid = Fidelity(phase="phase1", data="fashion-2", resolution=16, train_per_class=16, val_per_class=8, fit=fit)
    splits = load_splits(fid.data, resolution=16, train_per_class=16, val_per_class=8, cache_dir=tmp_path / "cache")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(SearchObjective(load_space(str(space_file)), fid, splits, tmp_path, Dedupe(study)), n_trials=4)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4 and all(t.params["neuron"] == "gwr" and t.user_attrs["canonical"].startswith("gwr|")
                                  for t in done)
    trained = [t for t in done if "dedupe_of" not in t.user_attrs]
    assert trained and all(t.user_attrs["neuron_mac_ops"] > 0 and t.user_attrs["energy_mj"] > 0 for t in trained)
    board = build_leaderboard(study)
    assert board.rows[0].neuron_mac_ops > 0 and board.rows[0].genotype.startswith("gwr|")
    header = format_terminal(board).splitlines()[0].split()
    assert header[-4:] == ["SOPs", "nMACs", "mJ", "fire"]  # the neurons' MACs beside the energy
    assert "| neuron MACs | energy (mJ) |" in format_markdown(board)
