"""Compiled SEW-ResNet-18 against SpikingJelly's hand-written ``sew_resnet18`` (ADD), same run.

Prints train-step and inference images/s for both at 64 px, batch 32, T=1 and T=4, and the
ratio compiled / SpikingJelly (target: >= 1.0 in eager mode). Measurements alternate between
the two models so that machine load hits both alike; the median of the repeats is reported.

    python bench/compiler_vs_spikingjelly.py [--repeats 5] [--batch 32] [--resolution 64]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from benchlib import time_infer, time_train

from snnas import build_model
from snnas.compiler.references import ZooNet, load_by_position


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--timesteps", default="1,4")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=gen)
    y = torch.randint(0, 1000, (args.batch,), generator=gen)
    print(f"SEW-ResNet-18, {args.resolution} px, batch {args.batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'T':>2} {'phase':<9} {'snnas img/s':>12} {'SJ img/s':>10} {'ratio':>6}")
    for T in (int(t) for t in args.timesteps.split(",")):
        ours = build_model("sew_resnet18", num_classes=1000, timesteps=T)
        ref = ZooNet("sew_resnet18", T)
        load_by_position(ref, ours)
        for phase in ("train", "inference"):
            times = {"ours": [], "ref": []}
            models = {"ours": ours, "ref": ref}
            opts = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, m in models.items()}
            for m in models.values():
                m.train(phase == "train")
            for i in range(args.repeats + 1):  # first round warms up
                for k, m in models.items():
                    dt = time_train(m, x, y, opts[k]) if phase == "train" else time_infer(m, x)
                    if i:
                        times[k].append(dt)
            ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
            print(f"{T:>2} {phase:<9} {ips['ours']:>12.1f} {ips['ref']:>10.1f} {ips['ours'] / ips['ref']:>6.2f}")


if __name__ == "__main__":
    main()
