"""``snnas export`` / ``scripts/export.py``: a ranked network of a (hand-made) search to
``DIR/<key>/`` with genotype, loadable weights, picture and card; user errors end in one line."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest

import snnas
from snnas import Genotype
from snnas.cli import main
from test_report import FID1, FID2, STUDY, assert_png, canonical, key, make_search

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def save_tiny(run_dir: Path, net: str, phase: str, fidelity: dict) -> Path:
    """The weights the objective would have stored for ``net`` in ``phase`` (the store's file for
    the artifact id that ``make_search`` records)."""
    model = snnas.build_model(canonical(net), num_classes=3, in_channels=1, timesteps=1, width_mult=0.5)
    path = run_dir / "artifacts" / f"id-{key(net)}-{phase}"
    snnas.save_model(path, model, extra={"val_acc": 0.5, "fidelity": fidelity, "trial": 0, "study": STUDY})
    return path


@pytest.fixture
def search(tmp_path):
    runs = tmp_path / "runs"
    made = make_search(runs)
    save_tiny(made["run_dir"], "B", "phase2", FID2)  # rank 1: phase-2 weights
    save_tiny(made["run_dir"], "C", "phase1", FID1)  # rank 3: phase 1 only
    # rank 2 (D) points at a file that holds another network; rank 4 (A) has no file at all
    (made["run_dir"] / "artifacts" / f"id-{key('D')}-phase2").write_bytes(
        (made["run_dir"] / "artifacts" / f"id-{key('C')}-phase1").read_bytes())
    return {"runs": runs, **made}


def export(search, *extra: str, out: Path | None = None) -> int:
    out = out or search["runs"].parent / "exports"
    return main(["export", "--study", STUDY, "--runs", str(search["runs"]), "--out", str(out), *extra])


def test_export_best_writes_genotype_weights_picture_and_card(search, capsys):
    out = search["runs"].parent / "exports"
    assert export(search, out=out) == 0
    printed = capsys.readouterr().out
    assert "rank 1: danet_c_resnet18" in printed and "phase-2 weights" in printed
    target = out / key("B")
    assert sorted(p.name for p in out.iterdir()) == [key("B")]  # no temporary directory left behind
    assert sorted(p.name for p in target.iterdir()) == ["architecture.png", "card.md", "genotype.json", "model.pt"]

    g = Genotype.from_json((target / "genotype.json").read_text())
    assert g == canonical("B") and g.key == key("B")
    assert (target / "genotype.json").read_text() == g.to_json(indent=2) + "\n"
    model = snnas.load_model(target / "model.pt")
    assert model.genotype == g and model.num_classes == 3
    assert (target / "model.pt").read_bytes() == (search["run_dir"] / "artifacts" / f"id-{key('B')}-phase2").read_bytes()
    assert_png(target / "architecture.png")

    card = (target / "card.md").read_text()
    assert card.startswith("# danet_c_resnet18")
    assert f"- key: `{key('B')}`" in card and f"`{canonical('B').to_str()}`" in card
    assert "weights in `model.pt`: phase 2" in card and f"study `{STUDY}.phase2`" in card
    assert "| phase 1 | 1 | fashion-5, 2 epochs" in card and "| 80.0 |" in card
    assert "| phase 2 | 1 | fashion-10, 3 epochs" in card and "| 75.0 |" in card
    assert (f"python scripts/retrain.py --genotype {target}/genotype.json --data fashion-10 --timesteps 1,4"
            in card)
    assert "width multiplier 0.5" in card
    assert "| SOPs / image | neuron MACs / image | energy (mJ) |" in card  # gwr's own MACs beside its SOPs


def test_export_of_a_phase1_only_network_says_so(search):
    out = search["runs"].parent / "exports"
    assert export(search, "--rank", "3", out=out) == 0
    target = out / key("C")
    card = (target / "card.md").read_text()
    assert "weights in `model.pt`: phase 1" in card and "not promoted" in card
    assert "| phase 2 |" not in card
    assert "--data fashion-10" in card  # retraining goes to the phase-2 data all the same
    assert snnas.load_model(target / "model.pt").genotype == canonical("C")


def test_export_again_replaces_the_earlier_export(search):
    out = search["runs"].parent / "exports"
    assert export(search, out=out) == 0
    stale = out / key("B") / "stale.txt"
    stale.write_text("from an earlier export")
    assert export(search, out=out) == 0
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == [key("B")]
    assert snnas.load_model(out / key("B") / "model.pt").genotype == canonical("B")


@pytest.mark.parametrize("args, message", [
    (["--rank", "0"], "--rank 0: study 'toy' ranks 4 networks; choose 1..4"),
    (["--rank", "5"], "--rank 5: study 'toy' ranks 4 networks; choose 1..4"),
    (["--rank", "2"], "the stored weights hold network"),  # the file belongs to another network
    (["--rank", "4"], "is not in the artifact store"),
    (["--artifacts", "/nonexistent/store"], "the artifact store /nonexistent/store does not exist"),
    (["--artifacts", "ftp://host/x"], "ftp:// is not a supported store"),
    (["--artifacts", "s3://No_Such"], "'No_Such' is not an S3 bucket name"),
    (["--storage", "mysql://u:secret@host/db"], "unsupported scheme 'mysql'"),
])
def test_user_errors_end_in_one_line(search, capsys, args, message):
    out = search["runs"].parent / "exports"
    assert export(search, *args, out=out) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnas: error: ") and err.count("\n") == 1 and message in err
    assert "secret" not in err
    assert not out.exists() or not [p for p in out.iterdir()]  # nothing half-written


def test_unknown_study_creates_nothing(search, capsys):
    for study in ("nope", f"{STUDY}.phase2"):
        code = main(["export", "--study", study, "--runs", str(search["runs"]), "--out", str(search["runs"] / "x")])
        assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert "no study 'nope'" in err[0] and f"studies under {search['runs']}/: {STUDY}" in err[0]
    assert f"name the search's study, '{STUDY}'" in err[1]
    assert not (search["runs"] / "nope").exists()
    # a storage that exists but holds no such study lists what it holds
    code = main(["export", "--study", "other", "--storage", search["storage"], "--out", str(search["runs"] / "x")])
    assert code == 2
    assert f"has no study 'other'; it holds: {STUDY}" in capsys.readouterr().err


def test_script_wrapper_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), "--study", "missing", "--runs",
                           str(tmp_path), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("snnas: error: no study 'missing'") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_export_with_nir_writes_the_graph_and_its_card_section(search, capsys):
    nir = pytest.importorskip("nir")
    out = search["runs"].parent / "exports"
    assert export(search, "--nir", out=out) == 2  # the model file does not say its image size
    assert "--resolution" in capsys.readouterr().err and not (out / key("B")).exists()
    assert export(search, "--nir", "--resolution", "16", out=out) == 0
    target = out / key("B")
    assert (target / "net.nir").is_file() and "net.nir" in capsys.readouterr().out
    graph = nir.read(str(target / "net.nir"))
    card = (target / "card.md").read_text()
    assert "## NIR" in card and f"{len(graph.nodes)} nodes" in card and "| stage 1 block 1 |" in card
    assert "dt = 0.0001 s" in card and "v > threshold" in card and "AvgPool2d 1" in card and "IF " in card
    assert export(search, "--nir-fold-pools", out=out) == 2  # without --nir, before any work
    assert capsys.readouterr().err.count("\n") == 1
    assert export(search, "--nir", "--nir-fold-pools", "--resolution", "16", out=out) == 0
    card = (target / "card.md").read_text()
    assert "AvgPool2d" not in card and "every pool folded" in card
    assert not any(isinstance(n, nir.AvgPool2d) for n in nir.read(str(target / "net.nir")).nodes.values())
