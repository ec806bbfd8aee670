"""Leaderboard and report.md of a search, on small hand-made studies with the attributes the
objective records (no training: the trials are created with ``optuna.trial.create_trial``)."""
from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest

from snnas.presets import get_preset
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from snnas import Genotype
from snnas.search.leaderboard import (build_leaderboard, fmt_float, format_markdown, format_terminal,
                                      summarize)
from snnas.search.report import write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = "toy"
# Tiny networks (2 stages, width 8): A and its dense_add twin are one network.
NETS = {
    "A": "if|small8|basic.pa_a.8x2.s1.chain|basic.pa_a.16x2.s2.chain",
    "A_twin": "if|small8|basic.pa_a.8x2.s1.dense_add|basic.pa_a.16x2.s2.chain",
    "B": "if|small8|basic.origin.8x2.s1.dense_add|basic.origin.16x2.s2.dense_add",
    "C": "if|small8|basic.baa.8x2.s1.chain|basic.sew.16x2.s2.chain",
    "D": "lif|small8|basic.tdbn.8x2.s1.dense_add|basic.origin.16x2.s2.chain",
    "E": "if|small8|basic.sew.8x2.s1.chain|basic.baa.16x2.s2.dense_add",
}
FID1 = {"phase": "phase1", "data": "fashion-5", "epochs": 2, "timesteps": 1, "resolution": None,
        "train_per_class": 20, "val_per_class": 10, "width_mult": 0.5, "batch_size": 64, "recipe": "proxy",
        "seed": 0, "data_seed": 0, "key": "phase1|fashion-5|e2|T1|rNone|n20/10|w0.5|b64|proxy|s0|d0"}
FID2 = {**FID1, "phase": "phase2", "data": "fashion-10", "epochs": 3,
        "key": "phase2|fashion-10|e3|T1|rNone|n20/10|w0.5|b64|proxy|s0|d0"}
LAYERS = ["stem.sn", "stages.0.blocks.0.branch.sn1", "stages.0.blocks.1.branch.sn1",
          "stages.1.blocks.0.branch.sn1", "stages.1.blocks.1.branch.sn1"]
_DIST = {"net": CategoricalDistribution(sorted(NETS))}


def canonical(net: str) -> Genotype:
    return Genotype.from_str(NETS[net]).canonical()


def key(net: str) -> str:
    return canonical(net).key


def attrs(net: str, phase: str, acc: float | None, sops: float, **extra) -> dict:
    c = canonical(net)
    fid = FID1 if phase == "phase1" else FID2
    out = {"genotype": NETS[net], "canonical": c.to_str(), "key": c.key, "phase": phase, "data": fid["data"],
           "fidelity": fid["key"], "params": 2807, "sops": sops, "macs": 1000.0, "energy_mj": 4.6e-6 + sops * 9e-10,
           "firing_rate": 0.1 + sops / 1e7, "firing_by_stage": {"stages.0": 0.12, "stages.1": 0.08},
           "firing_rates": {name: round(0.05 + 0.02 * i + sops / 1e7, 5) for i, name in enumerate(LAYERS)},
           "wall_s": 1.5, "epochs_run": fid["epochs"]}
    if acc is not None:
        out.update(val_acc=acc, model_artifact=f"id-{c.key}-{phase}")
    out.update(extra)
    return out


def add(study: optuna.Study, net: str, state: TrialState, acc: float | None = None, *, phase: str = "phase1",
        sops: float = 1e5, curve: dict | None = None, multi: bool = False, **extra) -> None:
    values = None
    if state == TrialState.COMPLETE:
        values = [acc, sops] if multi else [acc]
    study.add_trial(create_trial(state=state, values=values, params={"net": net}, distributions=_DIST,
                                 user_attrs=attrs(net, phase, acc if state == TrialState.COMPLETE else None, sops,
                                                  **extra),
                                 intermediate_values=curve or {}))


def make_search(root: Path, name: str = STUDY, phase2: bool = True, multi: bool = False) -> dict:
    """A finished search as the funnel leaves it: runs/<name>/study.db with phase 1 and phase 2.

    Phase 1: A (seed, 0.60), B (seed, 0.80), C (0.70), A's twin reusing A, D (0.90), E pruned,
    one failure (out of memory). Phase 2 promotes D and B: B 0.75, D 0.65.
    Final ranking: B, D (phase 2), then C, A (phase 1).
    """
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{run_dir / 'study.db'}"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    s1 = optuna.create_study(study_name=name, storage=storage, directions=directions)
    for k, v in {"space": "toy_space", "space_source": "snnas/spaces/catalog/toy_space.toml",
                 "objectives": ["acc", "sops"] if multi else ["acc"], "fidelity_phase1": FID1,
                 "fidelity_phase2": FID2}.items():
        s1.set_user_attr(k, v)
    curve = (lambda *v: None) if multi else (lambda *v: dict(enumerate(v, start=1)))
    add(s1, "A", TrialState.COMPLETE, 0.60, sops=3e5, seed_preset="danet_a_resnet18", multi=multi,
        curve=curve(0.4, 0.6))
    add(s1, "B", TrialState.COMPLETE, 0.80, sops=2e5, seed_preset="danet_c_resnet18", multi=multi,
        curve=curve(0.5, 0.8))
    add(s1, "C", TrialState.COMPLETE, 0.70, sops=1e5, multi=multi, curve=curve(0.5, 0.7))
    # A reuse repeats its source's value; this one is set apart to show that reuses never rank.
    add(s1, "A_twin", TrialState.COMPLETE, 0.61, sops=3e5, dedupe_of=0, seed_preset="danet_a_resnet18",
        multi=multi)
    add(s1, "D", TrialState.COMPLETE, 0.90, sops=4e5, multi=multi, curve=curve(0.7, 0.9))
    add(s1, "E", TrialState.PRUNED, curve=curve(0.21), fail_reason="pruned by the pruner after epoch 1")
    add(s1, "C", TrialState.FAIL, fail_reason="oom")
    if phase2:
        s2 = optuna.create_study(study_name=name + ".phase2", storage=storage, direction="maximize")
        s2.set_user_attr("fidelity_phase2", FID2)
        add(s2, "D", TrialState.COMPLETE, 0.65, phase="phase2", sops=4.5e5, promoted_from=4,
            promoted_key=key("D"), phase1_acc=0.90, curve={1: 0.4, 2: 0.6, 3: 0.65})
        add(s2, "B", TrialState.COMPLETE, 0.75, phase="phase2", sops=2.5e5, promoted_from=1,
            promoted_key=key("B"), phase1_acc=0.80, curve={1: 0.5, 2: 0.7, 3: 0.75})
    return {"run_dir": run_dir, "storage": storage}


def load(root: Path, name: str = STUDY):
    storage = f"sqlite:///{root / name / 'study.db'}"
    s1 = optuna.load_study(study_name=name, storage=storage)
    names = optuna.study.get_all_study_names(storage)
    s2 = optuna.load_study(study_name=name + ".phase2", storage=storage) if name + ".phase2" in names else None
    return s1, s2


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# --------------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------------
def test_phase2_first_then_phase1_one_row_per_network(tmp_path):
    make_search(tmp_path)
    board = build_leaderboard(*load(tmp_path))
    assert [r.key for r in board.rows] == [key("B"), key("D"), key("C"), key("A")]
    assert [r.rank for r in board.rows] == [1, 2, 3, 4]
    assert [r.phase for r in board.rows] == ["phase2", "phase2", "phase1", "phase1"]
    b, d, c, a = board.rows
    # phase-2 rows carry both accuracies and the phase-2 run's metrics (the exported weights)
    assert (b.phase1_acc, b.phase2_acc) == (0.80, 0.75) and b.sops == 2.5e5 and b.phase1_trial == 1
    assert (d.phase1_acc, d.phase2_acc) == (0.90, 0.65)  # phase 2 outranks a better proxy score
    assert (c.phase1_acc, c.phase2_acc) == (0.70, None) and c.model_artifact == f"id-{key('C')}-phase1"
    assert a.names == ("danet_a_resnet18",) and a.trial == 0  # the twin reused trial 0: no row of its own
    assert a.phase1_acc == 0.60
    assert b.name == "danet_c_resnet18" and c.names == ()
    assert a.genotype == canonical("A").to_str()
    assert list(b.firing_rates) == LAYERS
    assert board.phase1.complete == 5 and board.phase1.reused == 1 and board.phase1.networks == 4
    assert (board.phase1.pruned, board.phase1.failed) == (1, 1)
    assert board.phase2.complete == 2 and board.phase2.networks == 2


def test_without_phase2_ranks_by_phase1(tmp_path):
    make_search(tmp_path, phase2=False)
    board = build_leaderboard(*load(tmp_path))
    assert board.phase2 is None
    assert [r.key for r in board.rows] == [key("D"), key("B"), key("C"), key("A")]
    assert all(r.phase2_acc is None and r.phase == "phase1" for r in board.rows)


def test_terminal_table_is_readable_in_100_columns(tmp_path):
    make_search(tmp_path)
    text = format_terminal(build_leaderboard(*load(tmp_path)))
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert lines[0].split() == ["#", "network", "key", "acc1%", "acc2%", "params", "SOPs", "mJ", "xB18", "fire"]
    body = lines[2:6]
    assert body[0].split()[:3] == ["1", "danet_c_resnet18", key("B")]
    assert "75.0" in body[0] and "80.0" in body[0]
    assert body[1].split()[1:6] == ["lif", "w8-16", "2-2", "tdbn+da,origin", key("D")]  # unnamed: per-stage summary
    assert body[2].split()[-7:-5] == ["70.0", "-"]  # C has no phase-2 accuracy
    assert "1 reused" in text and "1 pruned, 1 failed" in text


def test_terminal_table_shortens_what_does_not_fit():
    from snnas.search.leaderboard import Leaderboard, PhaseCounts, Row

    wide = "if|small16|basic.sn_conv_bn_sn_conv_bn/sn/bn.16x3.s1.edges[i>0+,0>1+,0>2&,1>2+,2>o+].project|" * 1
    wide += "|".join(["basic.baa.32x2.s2.dense_add", "basic.sew.64x2.s2.chain", "basic.pa_b.128x2.s2.dense_add",
                      "bottleneck.origin.32x3.s2.chain"])
    row = Row(rank=1, genotype=wide, key="0123456789abcdef", names=(), phase1_acc=0.5, phase2_acc=None,
              params=123456789, sops=9.87e9, energy_mj=12.5, firing_rate=0.123, phase="phase1", trial=0,
              phase1_trial=0, model_artifact=None, fidelity=None)
    text = format_terminal(Leaderboard(rows=(row,), phase1=PhaseCounts(complete=1, networks=1), phase2=None))
    assert all(len(line) <= 100 for line in text.splitlines())
    line = text.splitlines()[2]
    assert "w16-32-64-128-32 3-2-2-2-3 sc~" in line  # summary (widths that are not a ResNet's first), cut to its column
    assert "123M" in line and "9.87G" in line and "0123456789abcdef" in line


def test_summaries_and_numbers():
    assert summarize(NETS["B"]) == "w8-16 2-2 origin+da x2"
    assert summarize(NETS["A_twin"]) == "w8-16 2-2 pa_a+da,pa_a"
    assert summarize(get_preset("danet_c_resnet18")) == "2-2-2-2 origin+da x4"  # a ResNet's own widths go unsaid
    assert summarize("not a genotype") == "not a genotype"
    assert fmt_float(2.93e-4) == "2.93e-4" and fmt_float(0.0146) == "0.0146" and fmt_float(None) == "-"
    assert fmt_float(0.0) == "0" and fmt_float(123456.0) == "1.23e5"


def test_markdown_table_names_presets_and_full_genotypes(tmp_path):
    make_search(tmp_path)
    md = format_markdown(build_leaderboard(*load(tmp_path)))
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 4
    assert rows[0].startswith("| 1 | **danet_c_resnet18**")
    assert canonical("B").to_str().replace("|", "\\|") in rows[0]
    assert f"`{key('C')}` | 70.0 | - |" in rows[2]


# --------------------------------------------------------------------------------------------
# report.md and plots
# --------------------------------------------------------------------------------------------
PLOTS = ("history.png", "intermediate.png", "pareto.png", "firing_top.png")


def assert_png(path: Path, min_size=(400, 300)) -> None:
    assert path.is_file(), path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        # not a blank canvas: a plot has many colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20


def test_report_holds_leaderboard_fidelities_failures_and_plots(tmp_path, capsys):
    run_dir = make_search(tmp_path)["run_dir"]
    path = write_report(*load(tmp_path), run_dir, print_leaderboard=True)
    assert path == run_dir / "report.md"
    text = path.read_text()
    printed = capsys.readouterr().out
    assert "danet_c_resnet18" in printed and key("B") in printed  # the terminal table
    assert text.startswith(f"# Search report: {STUDY}")
    assert "## Leaderboard" in text and "**danet_c_resnet18**" in text
    assert text.index(key("B")) < text.index(key("D")) < text.index(key("C")) < text.index(key("A"))
    assert "phase-2 accuracy (fashion-10)" in text
    assert FID1["key"].replace("|", "\\|") in text and FID2["key"].replace("|", "\\|") in text
    assert "| train images / class | 20 | 20 |" in text and "| epochs | 2 | 3 |" in text
    assert "| 1 | fail | oom |" in text and "| 1 | pruned | pruned by the pruner after epoch 1 |" in text
    assert f"python scripts/export.py --study {STUDY} --runs {tmp_path} --rank 1 --out exports/" in text
    for name in PLOTS:
        assert f"](plots/{name})" in text
        assert_png(run_dir / "plots" / name)
    assert not [p for p in run_dir.rglob("*.tmp")]  # atomic writes leave no temporaries


def test_report_of_multi_objective_search_and_empty_search(tmp_path, capsys):
    run_dir = make_search(tmp_path, multi=True, phase2=False)["run_dir"]
    s1, s2 = load(tmp_path)
    text = write_report(s1, s2, run_dir, print_leaderboard=False).read_text()
    assert capsys.readouterr().out == ""
    assert "acc (maximize), sops (minimize)" in text
    assert text.index(key("D")) < text.index(key("B"))
    for name in PLOTS:
        assert_png(run_dir / "plots" / name)

    empty_dir = tmp_path / "empty"
    empty = optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'empty.db'}")
    text = write_report(empty, None, empty_dir, print_leaderboard=True).read_text()
    assert "No completed trials yet." in text and "No failed or pruned trials." in text
    assert "(no completed trials yet)" in capsys.readouterr().out
    for name in PLOTS:
        assert (empty_dir / "plots" / name).is_file()


def test_pareto_front_keeps_only_non_dominated_points():
    from snnas.plots.search import ParetoPoint, pareto_front

    pts = [ParetoPoint(0.6, 3e5, "a"), ParetoPoint(0.8, 2e5, "b"), ParetoPoint(0.7, 1e5, "c"),
           ParetoPoint(0.9, 4e5, "d"), ParetoPoint(0.7, 1.5e5, "c2"), ParetoPoint(0.5, 1e5, "c3")]
    assert [p.label for p in pareto_front(pts)] == ["c", "b", "d"]


def test_leaderboard_and_report_show_full_training_beside_the_proxy(tmp_path):
    """A hand-made table of B, C, D and A: the proxy's phase-1 order is D B C A, the table's B D C A."""
    import json

    from snnas.groundtruth import Table, kendall_tau
    from snnas.search.report import study_groundtruth

    table_accs = {"B": [.88, .86], "D": [.85, .85], "C": [.80, .82], "A": [.70, .71]}
    runs = [{"key": key(n), "genotype": canonical(n).to_str(), "preset": None, "seed": s, "test_acc": a}
            for n, accs in table_accs.items() for s, a in enumerate(accs)]
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "groundtruth_fashion10.json").write_text(json.dumps({"settings": {
        "data": "fashion-10", "data_seed": 0, "fit": {"recipe": "short", "epochs": [5]}}, "runs": runs}))
    make_search(tmp_path)
    s1, s2 = load(tmp_path)
    truth = study_groundtruth(s1, tables)  # phase 2's data, fashion-10, matches the table
    assert isinstance(truth, Table) and truth.settings["data"] == "fashion-10"
    board = build_leaderboard(s1, s2)

    text = format_terminal(board, truth=truth)
    lines = text.splitlines()
    assert lines[0].split() == ["#", "network", "key", "acc1%", "acc2%", "full%", "params", "SOPs", "mJ", "xB18",
                                "fire"]
    assert lines[2].split()[:6] == ["1", "danet_c_resnet18", key("B"), "80.0", "75.0", "87.0"]
    expected = kendall_tau({key(n): a for n, a in {"D": .9, "B": .8, "C": .7, "A": .6}.items()}, truth.mean_acc())
    phase1 = next(line for line in lines if line.startswith("phase 1 vs full training"))
    assert f"Kendall tau {expected:.2f}" in phase1 and "over 4 networks" in phase1
    assert "seed-to-seed tau" in phase1
    assert all(len(line) <= 100 for line in lines[:8])

    md = format_markdown(board, truth)
    assert "full-training test acc % (spread)" in md and "| 87.0 (2.0) |" in md
    report = write_report(s1, s2, tmp_path / STUDY, print_leaderboard=False, truth=truth).read_text()
    assert "phase 2 vs full training" in report
    # without a table nothing changes
    assert "full%" not in format_terminal(board) and study_groundtruth(s1, tmp_path / "none") is None


# --------------------------------------------------------------------------------------------
# Which gene matters: importances, slices, timeline
# --------------------------------------------------------------------------------------------
GENE_PLOTS = ("importances.png", "slices.png", "timeline.png")
BLOCKS = ["origin", "tdbn", "baa", "sew", "pa_a", "pa_b"]
GENES = {"depth": CategoricalDistribution(["18", "34"]),
         **{f"s{i}.block": CategoricalDistribution(BLOCKS) for i in range(2)},
         **{f"s{i}.connect": CategoricalDistribution(["chain", "dense_add"]) for i in range(2)}}


def gene_search(n: int = 30, multi: bool = True) -> optuna.Study:
    """A phase 1 over per-stage genes, as a two-worker search leaves it: the best networks all
    use pa_a in stage 1; tdbn in stage 0 makes the worst ones (so reading accuracy the wrong way
    round would name s0.block). Every trial lasts a minute or two; some are pruned or failed,
    and trial 5 is a reuse whose value is far off (it must not count)."""
    import datetime as dt
    import random

    rng = random.Random(7)
    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"])
    clock = [dt.datetime(2026, 1, 1, 9, 0, 0)] * 2
    for number in range(n):
        params = {name: rng.choice(d.choices) for name, d in GENES.items()}
        acc = 0.5 + 0.3 * (params["s1.block"] == "pa_a") - 0.3 * (params["s0.block"] == "tdbn") + rng.gauss(0, 0.01)
        state = TrialState.FAIL if number % 11 == 10 else TrialState.PRUNED if number % 7 == 6 else TrialState.COMPLETE
        attrs = {"dedupe_of": 0} if number == 5 else {}
        if number == 5:
            state, acc, params["s1.block"] = TrialState.COMPLETE, 0.99, "origin"
        values = ([acc, 1e5] if multi else [acc]) if state == TrialState.COMPLETE else None
        trial = create_trial(state=state, values=values, params=params, distributions=GENES, user_attrs=attrs,
                             intermediate_values={1: acc - 0.1} if state == TrialState.PRUNED else {})
        worker = number % 2
        trial.datetime_start = clock[worker]
        trial.datetime_complete = clock[worker] + dt.timedelta(seconds=60 + 3 * number)
        clock[worker] = trial.datetime_complete + dt.timedelta(seconds=1)
        study.add_trial(trial)
    return study


def test_accuracy_study_keeps_trial_numbers_and_leaves_out_reuses():
    from snnas.plots.genes import accuracy_study

    phase = gene_search(12, multi=True)
    trials = phase.get_trials()
    acc = accuracy_study(trials, leave_out={5})
    assert acc.direction == optuna.study.StudyDirection.MAXIMIZE  # accuracy, whatever the second objective
    assert [t.number for t in acc.trials] == [t.number for t in trials]
    for t, a in zip(trials, acc.trials):
        if t.state == TrialState.COMPLETE and t.number != 5:
            assert a.state == TrialState.COMPLETE and a.value == pytest.approx(100 * t.values[0])
            assert a.params == t.params
        else:  # failed, pruned or left out: a placeholder without genes
            assert a.state == TrialState.FAIL and a.params == {}


def test_importances_name_the_gene_and_stage_that_decides_accuracy(tmp_path, monkeypatch):
    from snnas.plots import genes
    from snnas.search.report import gene_plots

    shown = {}
    real_save = genes.save_png

    def spy(fig, path, dpi):
        ax = fig.axes[0]
        shown[Path(path).name] = ([t.get_text() for t in ax.get_yticklabels()],
                                  [a.get_xlabel() for a in fig.axes])
        return real_save(fig, path, dpi)

    monkeypatch.setattr(genes, "save_png", spy)
    style = dict(matplotlib_rc())
    plots = gene_plots(gene_search(), tmp_path / "plots", "phase 1, fashion-10")
    assert [p.name for p in plots.values()] == list(GENE_PLOTS)
    for name in GENE_PLOTS:
        assert_png(tmp_path / "plots" / name)
    bars, _ = shown["importances.png"]
    assert bars[-1] == "s1.block"  # the top bar: the gene and stage the best networks share
    assert set(bars) == set(GENES)  # every gene, per stage, and nothing else
    _, panels = shown["slices.png"]
    assert set(GENES) <= set(panels)  # one slice panel per gene and stage
    assert dict(matplotlib_rc()) == style  # Optuna's ggplot style does not leak into later figures


def matplotlib_rc():
    import matplotlib

    return {k: matplotlib.rcParams[k] for k in ("axes.facecolor", "axes.grid", "font.size")}


def test_report_links_the_gene_plots(tmp_path):
    run_dir = make_search(tmp_path)["run_dir"]
    s1, s2 = load(tmp_path)
    s1.set_user_attr("sampler", "random")
    text = write_report(s1, s2, run_dir, print_leaderboard=False).read_text()
    assert "- sampler: random" in text
    for name in GENE_PLOTS:
        assert f"](plots/{name})" in text
        assert_png(run_dir / "plots" / name, min_size=(300, 300))
    assert text.index("(plots/history.png)") < text.index("(plots/importances.png)") < text.index("## Failed")
    assert not [p for p in run_dir.rglob("*.tmp")]


def test_gene_plots_that_cannot_be_drawn_are_noted_not_fatal(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from snnas.plots import genes

    one = optuna.create_study(direction="maximize")  # one network: nothing to compare
    one.add_trial(create_trial(value=0.5, params={"s1.block": "sew"},
                                     distributions={"s1.block": GENES["s1.block"]}))
    text = write_report(one, None, tmp_path / "one", print_leaderboard=False).read_text()
    assert text.count("Not drawn: needs at least 2 completed networks, the phase has 1.") == 2
    assert "plots/importances.png" not in text and "plots/slices.png" not in text
    assert "](plots/timeline.png)" in text

    same = optuna.create_study(direction="maximize")  # two networks, one choice: no gene varies
    for acc in (0.5, 0.6):
        same.add_trial(create_trial(value=acc, params={"s1.block": "sew"},
                                     distributions={"s1.block": GENES["s1.block"]}))
    text = write_report(same, None, tmp_path / "same", print_leaderboard=False).read_text()
    assert text.count("Not drawn: every completed network made the same choices: no gene varies.") == 2

    def broken(*args, **kwargs):
        plt.figure()  # Optuna made a figure, then failed
        raise RuntimeError("no renderer\nfor this")

    monkeypatch.setattr(genes.optuna_plots, "plot_slice", broken)
    figures = plt.get_fignums()
    text = write_report(gene_search(), None, tmp_path / "broken", print_leaderboard=False).read_text()
    assert "Not drawn: Optuna could not draw it (RuntimeError: no renderer for this)." in text
    assert "](plots/importances.png)" in text and "](plots/timeline.png)" in text
    assert plt.get_fignums() == figures  # the failed figure was closed
