"""scripts/retrain.py end to end on a few Fashion-MNIST images: files, export, resume, errors, DDP."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snnas import build_model, count_parameters, load_model
from snnas.cli import retrain
from snnas.data import FASHION_DEFAULT_DIR, BatchLoader, load_splits
from snnas.genotype.vocabulary import resolve_stem
from snnas.train import evaluate_model

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="Fashion-MNIST is not installed"),
              pytest.mark.usefixtures("one_thread")]

TINY = ["--data", "fashion-5", "--train-per-class", "16", "--val-per-class", "2", "--test-per-class", "4",
        "--resolution", "16", "--width-mult", "0.125", "--no-progress"]


@pytest.mark.parametrize("requested, own, px, expected", [
    ("auto", "imagenet", 28, "half"),  # the preset's ImageNet stem would leave 7x7 maps
    ("auto", "imagenet", 64, "half"),
    ("auto", "imagenet", 96, "imagenet"),
    ("auto", "small", 28, "small"),  # a searched genotype keeps its own
    ("imagenet", "imagenet", 28, "imagenet"),  # asked for explicitly
    ("small", "imagenet", 224, "small"),
])
def test_stem_choice(requested, own, px, expected):
    assert resolve_stem(requested, own, px) == expected


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_phase_retrain_exports_a_loadable_model_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--genotype", "pa_a_resnet18", "--stem", "small", *TINY, "--epochs", "1", "--timesteps", "1,2",
            "--batch-size", "16", "--aux-heads", "--out", str(out)]
    assert retrain.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == [1, 1] and summary["timesteps"] == [1, 2] and summary["data"] == "fashion-5"
    assert summary["test_images"] == 20 and 0 <= summary["test_acc"] <= 1
    assert summary["wall_s"] > 0 and summary["images_per_s"] > 0
    assert [(r["phase"], r["timesteps"]) for r in records(out)] == [(1, 1), (2, 2)]
    assert {"phase1-T1", "phase2-T2"} <= {p.name for p in out.iterdir()}

    model = load_model(out / "model.pt")
    assert model.timesteps == 2 and model.genotype.stem == "small" and model.genotype.key == summary["key"]
    plain = build_model(model.genotype, num_classes=5, in_channels=1, width_mult=0.125)
    assert summary["params"] == count_parameters(model) == count_parameters(plain)  # no auxiliary heads inside
    splits = load_splits("fashion-5", resolution=16, train_per_class=16, val_per_class=2)
    test = retrain._first_per_class(splits.test, 4)
    again = evaluate_model(model, BatchLoader(test, batch_size=256, shuffle=False))
    assert again["acc"] == pytest.approx(summary["test_acc"]) and again["images"] == 20

    capsys.readouterr()
    assert retrain.main(argv + ["--resume"]) == 0  # everything is done: nothing is trained again
    assert "epoch" not in capsys.readouterr().out.replace("epochs", "")
    assert json.loads((out / "summary.json").read_text())["test_acc"] == pytest.approx(summary["test_acc"])
    assert len(records(out)) == 2


@pytest.mark.parametrize("change, message", [
    (["--genotype", "no_such_net"], "no_such_net"),
    (["--data", "fashion-99"], "fashion"),
    (["--timesteps", "1,x"], "--timesteps"),
    (["--recipe", "fast"], "unknown recipe"),
    (["--batch-size", "500"], "fewer than one batch"),
    (["--width-mult", "0"], "--width-mult"),
    (["--augment", "blur"], "(--augment): 'blur'"),
    (["--eval-every", "0"], "eval_every"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    argv = ["--genotype", "pa_a_resnet18", *TINY, "--epochs", "1", "--out", str(tmp_path / "x")]
    for i in range(0, len(change), 2):
        if change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i:i + 2]
    assert retrain.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("snnas: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x" / "model.pt").exists()


def test_retrain_registers_as_a_subcommand():
    parser = argparse.ArgumentParser()
    retrain.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["retrain", "--genotype", "g", "--data", "d", "--timesteps", "1,4", "--resume"])
    assert args.func is retrain.run and args.timesteps == "1,4" and args.resume


def test_torchrun_two_processes_follow_the_single_process_curve(tmp_path):
    # The proxy recipe's random crops keep the two runs' trajectories close: without augmentation the
    # per-process BN statistics (below) move the loss by up to 0.09 (gaps of 0.01-0.02 with crops, 3 seeds).
    argv = ["--genotype", "pa_a_resnet18", "--stem", "small", *TINY, "--train-per-class", "64", "--epochs", "2",
            "--batch-size", "64", "--lr-per-256", "0.2", "--recipe", "proxy"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--standalone", str(ROOT / "scripts" / "retrain.py"), *argv,
                           "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert retrain.main(argv + ["--out", str(tmp_path / "one")]) == 0
    ddp, one = records(tmp_path / "ddp"), records(tmp_path / "one")
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    assert [r["train_images"] for r in ddp] == [r["train_images"] for r in one] == [320, 320]  # the global batch
    assert [r["lr"] for r in ddp] == pytest.approx([r["lr"] for r in one])
    # equal up to batch norm, whose statistics each process takes over its half batch (sync-BN is GPU-only);
    # validation is left out: its running statistics are rank 0's alone, and 10 images are too few anyway
    for a, b in zip(ddp, one):
        assert abs(a["train_loss"] - b["train_loss"]) < 0.05, (a["train_loss"], b["train_loss"])


def test_the_reproducing_command_parses_back_to_the_same_settings():
    """The one builder of retrain commands (export, the ground-truth table, the search outcome):
    every setting that changes the numbers survives the round trip through retrain's parser."""
    import shlex

    from snnas.fit import FitSettings

    fit = FitSettings(recipe="sprint", epochs=(3, 1), timesteps=(1, 4), width_mult=0.25, seed=2, batch_size=32,
                      lr_per_256=0.8, augment="crop_flip", stem="half", aux_heads=True)
    command = retrain.retrain_command("danet_a_resnet18", "fashion-10", fit, resolution=28, train_per_class=600,
                                      val_per_class=50, data_seed=3, out="runs/x")
    parser = argparse.ArgumentParser()
    retrain.add_arguments(parser)
    args = parser.parse_args(shlex.split(command)[2:])
    assert retrain.fit_settings(args) == fit
    assert (args.genotype, args.data, args.resolution, args.train_per_class, args.val_per_class, args.data_seed,
            args.out) == ("danet_a_resnet18", "fashion-10", 28, 600, 50, 3, "runs/x")
