"""Firing rates and gradient stability of the paper's connection types at initialisation.

Do the paper's orderings already show before training? Fig. 3 / Table I: PA-A (DANet-A) fires most,
PA-B (DANet-B) least, SEW in between. Tables IV/V (ResNet-34/50): gradient stability DANet-A > SEW >
DANet-B and DANet-C, DANet-D > Origin. Every network is built under one seed and run on one seeded batch
of standard-normal images; figures are printed as ratios to Origin of the same depth measured in the
same run, beside the raw values.

    .venv/bin/python bench/init_diagnostics.py                      # ResNet-34 and -50, 64 px, T=1 and 4
    .venv/bin/python bench/init_diagnostics.py --depths 34 --timesteps 1 --batch-size 8
"""
from __future__ import annotations

import argparse
import sys
import time

from snnas.cli.inspect import random_batch, seeded_model
from snnas.files import atomic_write_json
from snnas.metrics import firing_rates, gradient_stability

TYPES = ("origin", "danet_c", "danet_d", "sew", "danet_a", "danet_b")
REFERENCE = "origin"
# The paper's claims, one at a time: (measure, claim, type, the types it beats, "highest"/"lowest")
CLAIMS = (
    ("firing", "Fig. 3 / Table I: PA-A (DANet-A) fires most of SEW, PA-A, PA-B", "danet_a", ("sew", "danet_b"),
     "highest"),
    ("firing", "Fig. 3 / Table I: PA-B (DANet-B) fires least of SEW, PA-A, PA-B", "danet_b", ("sew", "danet_a"),
     "lowest"),
    ("grad", "Table IV: DANet-A has the most stable gradients of SEW, DANet-A, DANet-B", "danet_a",
     ("sew", "danet_b"), "highest"),
    ("grad", "Table IV: DANet-B has the least stable gradients of SEW, DANet-A, DANet-B", "danet_b",
     ("sew", "danet_a"), "lowest"),
    ("grad", "Table V: DANet-C has more stable gradients than Origin", "danet_c", ("origin",), "highest"),
    ("grad", "Table V: DANet-D has more stable gradients than Origin", "danet_d", ("origin",), "highest"),
)


def measure(preset: str, timesteps: int, batch, seed: int) -> dict:
    model = seeded_model(preset, seed, num_classes=1000, timesteps=timesteps)
    fire = firing_rates(model, batch)
    grad = gradient_stability(model, batch)
    return {"firing": fire.overall, "firing_layer_mean": fire.layer_mean, "grad": grad.product,
            "grad_geomean": grad.geometric_mean, "layers": len(grad.layers)}


def holds(key: str, winner: str, others: tuple[str, ...], sense: str, rows: dict[str, dict]) -> bool:
    value = rows[winner][key]
    return all((value > rows[o][key]) if sense == "highest" else (value < rows[o][key]) for o in others)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[34, 50])
    p.add_argument("--timesteps", type=int, nargs="+", default=[1, 4])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = p.parse_args(argv)

    batch = random_batch(args.batch_size, 3, args.resolution, args.seed)
    results = {}
    for depth in args.depths:
        for t in args.timesteps:
            rows = {}
            for kind in TYPES:
                start = time.perf_counter()
                rows[kind] = measure(f"{kind}_resnet{depth}", t, batch, args.seed)
                print(f"  measured {kind}_resnet{depth} T={t} in {time.perf_counter() - start:.1f} s",
                      file=sys.stderr, flush=True)
            results[f"resnet{depth}_T{t}"] = rows
            ref = rows[REFERENCE]
            print(f"\nResNet-{depth}, T={t}, {args.resolution} px, batch {args.batch_size}, seed {args.seed} "
                  f"(ratios to {REFERENCE})")
            print(f"{'type':<9} {'layers':>6} {'firing':>8} {'x ref':>7} {'layer-mean':>10} "
                  f"{'grad product':>13} {'x ref':>9} {'geo-mean':>9}")
            for kind, r in rows.items():
                print(f"{kind:<9} {r['layers']:>6} {r['firing']:>8.4f} {r['firing'] / ref['firing']:>7.2f} "
                      f"{r['firing_layer_mean']:>10.4f} {r['grad']:>13.3e} {r['grad'] / ref['grad']:>9.3g} "
                      f"{r['grad_geomean']:>9.4f}")
            for key, text, winner, others, sense in CLAIMS:
                verdict = "holds" if holds(key, winner, others, sense, rows) else "fails"
                print(f"  {verdict} at init: {text} ({'product' if key == 'grad' else 'overall rate'})")
    if args.json:
        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
