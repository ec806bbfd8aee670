"""What the window-recurrent neuron costs against IF, measured in the same run.

DANet-B-18 (width 1/4, Fashion-MNIST's 28 px, stem resolved for it, T=1, batch 64) built with
`if`, `gwr` (its defaults: 2 x 2 windows, every other layer dilated), `gwr(dil=off)` and
`gwr(dil=on)`, same weights. Prints training-step and inference images/s, their ratio to IF, and
the memory autograd saves for the backward pass of one training step (every tensor packed by
`saved_tensors_hooks`, counted once per storage). Measurements alternate between the networks so
that machine load hits all alike; the median of the repeats is reported.

    OMP_NUM_THREADS=1 python bench/gwr_cost.py [--repeats 5] [--batch 64] [--preset danet_b_resnet18]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from benchlib import time_infer, time_train

from snnas import build_model, get_preset
from snnas.genotype import Neuron
from snnas.genotype.vocabulary import AUTO_STEM, resolve_stem

NEURONS = {"if": Neuron(), "gwr": Neuron(kind="gwr"), "gwr(dil=off)": Neuron(kind="gwr", dil="off"),
           "gwr(dil=on)": Neuron(kind="gwr", dil="on")}


def saved_bytes(model, x, y) -> int:
    """Bytes autograd keeps for the backward pass of one training step (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="danet_b_resnet18")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--width-mult", type=float, default=0.25)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, args.resolution, args.resolution, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    base = get_preset(args.preset)
    base = base.replace(stem=resolve_stem(AUTO_STEM, base.stem, args.resolution))
    models = {}
    for name, spec in NEURONS.items():
        torch.manual_seed(0)
        models[name] = build_model(base.replace(neuron=spec), num_classes=10, in_channels=1, timesteps=1,
                                   width_mult=args.width_mult)
    reference = models["if"].state_dict()
    for m in models.values():
        m.load_state_dict(reference)
    print(f"{args.preset}, width {args.width_mult}, {args.resolution} px, batch {args.batch}, T=1, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = {name: {} for name in models}
    for phase in ("train", "inference"):
        times = {name: [] for name in models}
        opts = {name: torch.optim.SGD(m.parameters(), lr=0.0) for name, m in models.items()}
        for m in models.values():
            m.train(phase == "train")
        for i in range(args.repeats + 1):  # the first round warms up
            for name, m in models.items():
                dt = time_train(m, x, y, opts[name]) if phase == "train" else time_infer(m, x)
                if i:
                    times[name].append(dt)
        for name in models:
            rows[name][phase] = args.batch / statistics.median(times[name])
    for name, m in models.items():
        m.train()
        rows[name]["saved"] = saved_bytes(m, x, y)
    ref = rows["if"]
    print(f"{'neuron':<14} {'train img/s':>11} {'ratio':>6} {'infer img/s':>11} {'ratio':>6} "
          f"{'saved MiB':>9} {'ratio':>6}")
    for name, r in rows.items():
        print(f"{name:<14} {r['train']:>11.1f} {r['train'] / ref['train']:>6.2f} {r['inference']:>11.1f} "
              f"{r['inference'] / ref['inference']:>6.2f} {r['saved'] / 2**20:>9.1f} {r['saved'] / ref['saved']:>6.2f}")


if __name__ == "__main__":
    main()
