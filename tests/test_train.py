"""Trainer, recipes, schedules, resume, two-phase training and shortcut heads, on a tiny task."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch

import snnas.train
from snnas import build_model
from snnas.checkpoint import save_model, read_model_file
from snnas.errors import CheckpointError, DataError, Diverged
from snnas.train import (Callback, StopAfter, TrainConfig, TrainConfigError, Trainer, get_recipe, list_recipes,
                         plan_phases, register_recipe, run_phases)
from snnas.train.schedule import build_scheduler
from snnas.train.shortcut import head_share
from tests.devices import CUDA, exact_kernels

RES, CLASSES = 16, 4


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(timesteps: int = 1, preset: str = "pa_a_resnet18") -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(preset, num_classes=CLASSES, in_channels=1, timesteps=timesteps, width_mult=0.125)


def quadrant_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c lights quadrant c of a noisy 16x16 image: learnable in a few epochs by any sane net."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = torch.randn(n, 1, RES, RES, generator=g) * 0.5
    half = RES // 2
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * half:(r + 1) * half, col * half:(col + 1) * half] += 2.0
    return x, y


class Batches:
    """A minimal loader with the BatchLoader surface the trainer uses: len, set_epoch, a generator
    that augmentation draws from (so resuming must restore its state), and a named split."""

    class _Split:
        def __init__(self, name):
            self.name = name

    def __init__(self, x, y, batch_size, seed=0, shuffle=True, name="train", nan_at=None):
        self.x, self.y, self.batch_size, self.seed, self.shuffle = x, y, batch_size, seed, shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.dataset = self._Split(name)
        self.epoch = 0
        self.nan_at = nan_at

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch)) \
            if self.shuffle else torch.arange(n)
        for b, i in enumerate(range(0, n, self.batch_size)):
            idx = order[i:i + self.batch_size]
            x = self.x[idx].clone()
            if self.shuffle:  # label-preserving noise drawn from the loader's own generator
                x += 0.2 * torch.randn(x.shape, generator=self.generator)
            if self.nan_at is not None and b + 1 == self.nan_at[1] and self.epoch + 1 == self.nan_at[0]:
                x[0, 0, 0, 0] = float("nan")
            yield x, self.y[idx]


@pytest.fixture(scope="module")
def data():
    x, y = quadrant_task(128, seed=1)
    xv, yv = quadrant_task(48, seed=2)
    return x, y, xv, yv


def loaders(data, batch_size=16, **kw):
    x, y, xv, yv = data
    return Batches(x, y, batch_size, **kw), Batches(xv, yv, 64, shuffle=False, name="val")


FAST = TrainConfig(epochs=3, batch_size=16, lr_per_256=0.8, warmup_epochs=0.25, label_smoothing=0.1)


# ------------------------------------------------------------------ config and recipes
def test_config_rejects_bad_values_with_the_setting_named():
    for bad in ({"epochs": 0}, {"batch_size": -1}, {"schedule": "linear"}, {"warmup_epochs": 3},
                {"label_smoothing": 1.0}, {"grad_clip": 0}, {"schedule": "step", "milestones": ()},
                {"milestones": (3, 2)}, {"aux_weight": 1.5}, {"timesteps": 0}, {"amp": "fp16"}, {"amp": 1}):
        with pytest.raises(TrainConfigError) as info:
            FAST.replace(**bad)
        assert next(iter(bad)) in str(info.value)
    with pytest.raises(TrainConfigError, match="unknown training setting"):
        FAST.replace(learning_rate=1)
    with pytest.raises(Exception):
        FAST.epochs = 4  # frozen


def test_config_round_trips_through_plain_data():
    cfg = get_recipe("paper-imagenet")
    data = cfg.to_dict()
    json.dumps(data)  # plain
    assert TrainConfig.from_dict(data) == cfg


def test_amp_names_its_type_and_true_stays_float16():
    assert (FAST.amp, FAST.amp_dtype) == (True, "float16")
    assert FAST.replace(amp="float16") == FAST  # one spelling: old checkpoints and tables compare equal
    bf16 = FAST.replace(amp="bfloat16")
    assert bf16.amp_dtype == "bfloat16" and TrainConfig.from_dict(bf16.to_dict()) == bf16
    assert FAST.replace(amp=False).amp_dtype is None
    with pytest.raises(TrainConfigError, match="amp"):
        snnas.train.evaluate_model(tiny_model(), [], amp="half")


def test_recipes_carry_the_papers_numbers():
    paper = get_recipe("paper-imagenet")
    assert (paper.epochs, paper.warmup_epochs, paper.schedule, paper.milestones) == (120, 15, "step", (60, 105, 115))
    assert (paper.lr_per_256, paper.weight_decay, paper.momentum, paper.augment) == (0.1, 1e-4, 0.9, "autoaugment")
    t4 = paper.phase_config(1, 4)
    assert (t4.epochs, t4.warmup_epochs, t4.milestones, t4.lr_per_256, t4.weight_decay, t4.timesteps) == \
        (45, 10, (30, 40), 0.02, 1e-5, 4)
    proxy = get_recipe("proxy")
    assert (proxy.schedule, proxy.warmup_epochs, proxy.lr_per_256, proxy.weight_decay, proxy.label_smoothing,
            proxy.augment) == ("cosine", 1, 0.1, 1e-4, 0.1, "crop_flip")
    assert {"proxy", "paper-imagenet"} <= set(list_recipes())
    with pytest.raises(TrainConfigError, match="already registered"):
        register_recipe("proxy", proxy)
    with pytest.raises(TrainConfigError, match="unknown recipe 'nope'.*proxy"):
        get_recipe("nope")


def test_shortened_recipe_keeps_its_shape():
    short = get_recipe("paper-imagenet").with_epochs(12)
    assert short.epochs == 12 and short.warmup_epochs == pytest.approx(1.5) and short.milestones == (6, 10, 11)
    phases = plan_phases(get_recipe("paper-imagenet"), [1, 4], [12])
    assert [p.config.epochs for p in phases] == [12, 4] and [p.timesteps for p in phases] == [1, 4]
    assert phases[1].config.lr_per_256 == 0.02
    with pytest.raises(TrainConfigError, match="timesteps"):
        plan_phases(get_recipe("proxy"), [1, 0])


def test_schedule_warms_up_per_batch_then_decays():
    def lrs(cfg, steps_per_epoch=10):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=cfg.lr)
        sched = build_scheduler(opt, cfg, steps_per_epoch)
        seen = []
        for _ in range(cfg.epochs * steps_per_epoch):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return seen

    cos = lrs(TrainConfig(epochs=4, batch_size=256, warmup_epochs=1, warmup_start_factor=0.01))
    assert cos[0] == pytest.approx(0.001) and cos[10] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(cos[:10], cos[1:11]))  # rises every batch of warm-up
    assert all(a >= b for a, b in zip(cos[10:], cos[11:])) and cos[-1] < 0.002
    step = lrs(TrainConfig(epochs=6, batch_size=512, warmup_epochs=1, schedule="step", milestones=(3, 5)))
    assert step[10] == pytest.approx(0.2) and step[29] == pytest.approx(0.2)
    assert step[30] == pytest.approx(0.02) and step[50] == pytest.approx(0.002)
    assert head_share(0.5, 0, 4) == 0.5 and head_share(0.5, 3, 4) == 0.125 and head_share(0.5, 4, 4) == 0.0


# ------------------------------------------------------------------ fitting
def test_fit_learns_and_reports_each_split(data, tmp_path):
    train, val = loaders(data)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, epoch, metrics):
            seen.append((epoch, metrics))
            return False

    cfg = FAST.replace(eval_every=2)
    result = Trainer(tiny_model(), cfg, callbacks=[Record()], out_dir=tmp_path, progress=False,
                     tensorboard=True).fit(train, val)
    assert [e for e, _ in seen] == [1, 2, 3] and not result.stopped_early
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert ["val_acc" in m for _, m in seen] == [False, True, True]  # every 2nd epoch and the last
    last = seen[-1][1]
    for key in ("epoch", "lr", "train_loss", "train_acc", "images_per_s", "val_acc", "val_loss"):
        assert isinstance(last[key], (int, float)) and math.isfinite(last[key]), key
    assert last["train_split"] == "train" and last["val_split"] == "val"
    assert last["val_acc"] >= 0.45 and last["val_acc"] == result.last["val_acc"]  # chance: 0.25
    assert seen[-1][1]["train_loss"] < seen[0][1]["train_loss"]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3] and lines[-1]["val_acc"] == last["val_acc"]
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not list(tmp_path.glob("*.tmp"))


# A run is a function of its seed on every device: with cuDNN's deterministic algorithms a CUDA run
# resumed from its checkpoint (GradScaler state included) ends with the straight run's weights to the
# last bit, under float16 or bfloat16 autocast as under float32. AMP loosens no tolerance here.
RESUME_PRECISIONS = [pytest.param("cpu", True, id="cpu"),
                     pytest.param("cuda", True, id="cuda-float16", marks=CUDA),
                     pytest.param("cuda", "bfloat16", id="cuda-bfloat16", marks=CUDA),
                     pytest.param("cuda", False, id="cuda-float32", marks=CUDA)]


@pytest.mark.parametrize("device, amp", RESUME_PRECISIONS)
def test_killed_and_resumed_run_ends_with_the_same_weights(data, tmp_path, device, amp):
    cfg = FAST.replace(epochs=2, grad_clip=5.0, amp=amp)
    run = dict(progress=False, device=device)
    with exact_kernels(device):
        straight = tiny_model()
        Trainer(straight, cfg, out_dir=tmp_path / "a", **run).fit(*loaders(data))

        first = tiny_model()  # "killed" after epoch 1: the process is gone, only the directory remains
        cut = Trainer(first, cfg, out_dir=tmp_path / "b", callbacks=[StopAfter(1)], **run).fit(*loaders(data))
        assert cut.stopped_early and cut.epochs_run == 1
        del first
        resumed = tiny_model()
        result = Trainer(resumed, cfg, out_dir=tmp_path / "b", **run).fit(*loaders(data), resume=True)
    assert result.resumed_from == 1 and result.epochs_run == 1
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    epochs = [json.loads(s)["epoch"] for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]

    # resuming a finished run trains nothing; resuming under other settings is refused
    again = Trainer(tiny_model(), cfg, out_dir=tmp_path / "b", **run).fit(*loaders(data), resume=True)
    assert again.epochs_run == 0 and [r.epoch for r in again.history] == [1, 2]
    with pytest.raises(CheckpointError, match="lr_per_256"):
        Trainer(tiny_model(), cfg.replace(lr_per_256=0.4), out_dir=tmp_path / "b", **run).fit(*loaders(data),
                                                                                              resume=True)


def test_nan_loss_raises_diverged_naming_epoch_and_step(data):
    x, y, *_ = data
    train = Batches(x[:32], y[:32], 16)  # two steps an epoch
    model = tiny_model()
    calls = []

    def poison(module, args, output):  # the 3rd training step (epoch 2, step 1) produces NaN
        if module.training and torch.is_grad_enabled():  # training steps, not BN recalibration
            calls.append(1)
            if len(calls) == 3:
                return output * float("nan")
        return output

    model.register_forward_hook(poison)
    with pytest.raises(Diverged) as info:
        Trainer(model, FAST, progress=False).fit(train)
    assert (info.value.epoch, info.value.step) == (2, 1) and "epoch 2, step 1" in str(info.value)


def test_empty_training_data_is_a_data_error(data):
    x, y, *_ = data
    with pytest.raises(DataError, match="no batches"):
        Trainer(tiny_model(), FAST, progress=False).fit(Batches(x[:0], y[:0], 32))


# ------------------------------------------------------------------ two phases
def test_second_phase_starts_from_the_first_phase_weights(data, tmp_path):
    model = tiny_model()
    phases = plan_phases(FAST.replace(finetune=FAST.replace(lr_per_256=0.16, weight_decay=1e-5)), [1, 2], [3, 1])
    first_seen = {}

    def snapshot(module, args):
        if module.timesteps == 2 and module.training and not first_seen:
            first_seen.update({k: v.clone() for k, v in module.state_dict().items()})

    model.register_forward_pre_hook(snapshot)
    results = run_phases(model, phases, *loaders(data), out_dir=tmp_path, progress=False)
    phase1 = torch.load(tmp_path / "phase1-T1" / "checkpoint.pt", weights_only=True)
    for k, v in phase1["model"].items():
        assert torch.equal(first_seen[k], v), k
    assert model.timesteps == 2 and phases[1].config.lr_per_256 == 0.16
    acc1, acc2 = results[0].last["val_acc"], results[1].last["val_acc"]
    assert acc1 >= 0.45 and acc2 >= acc1 - 0.05
    records = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"], r["timesteps"]) for r in records] == [(1, 1, 1), (1, 2, 1), (1, 3, 1),
                                                                           (2, 1, 2)]


# ------------------------------------------------------------------ shortcut back-propagation
def test_shortcut_heads_live_in_the_trainer_only(data, tmp_path):
    model = tiny_model()
    plain = tiny_model()
    cfg = FAST.replace(epochs=2, aux_heads=True, aux_weight=0.5)
    trainer = Trainer(model, cfg, progress=False)
    assert len(trainer.heads) == len(model.stage_channels) - 1 == 3
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimised for p in trainer.heads.parameters())
    result = trainer.fit(*loaders(data))
    shares = [r["aux_share"] for r in result.history]  # 8 steps an epoch: mean of 0.5 * (1 - t/16)
    assert shares == pytest.approx([0.5 * (1 - 3.5 / 16), 0.5 * (1 - 11.5 / 16)])
    assert all(math.isfinite(r["train_total_loss"]) for r in result.history)
    assert not any("heads" in name for name, _ in model.named_modules())
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    save_model(tmp_path / "m.pt", model)
    stored = read_model_file(tmp_path / "m.pt")["state_dict"]
    assert stored.keys() == plain.state_dict().keys()


def test_trainer_does_not_import_optuna():
    root = Path(snnas.train.__file__).parent
    for path in [*root.glob("*.py"), root.parent / "checkpoint.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "optuna" for n in names), path
