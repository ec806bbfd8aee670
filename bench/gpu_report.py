"""The GPU check's ratios, targets and tables, computed from its recorded measurements alone.

Every ratio is between two measurements of the same run (``bench/gpu.py``); the CPU figures it holds
the GPU against are the README's, quoted with their source in ``bench/gpu.py``.
"""
from __future__ import annotations

import math
from typing import Any

TARGET_VS_ZOO = 1.2  # snnas trains at >= 1.2x SpikingJelly's images/s at the longest T (4)
TARGET_VS_ANN_T1 = 0.8  # ... and at >= 0.8x its ReLU twin's at T=1
TARGET_PROXY_SPEEDUP = 10.0  # a phase-1 trial >= 10x faster than on the 2-core CPU
TARGET_DATA_WAIT = 0.10  # data wait < 10% of a step at 224 px


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _target(what: str, value: float | None, bound: float, op: str) -> dict[str, Any]:
    ok = value is not None and (value >= bound if op == ">=" else value < bound)
    return {"what": what, "value": value, "target": f"{op} {bound:g}", "pass": ok}


def throughput_rows(runs: list[dict]) -> list[dict]:
    """One row per snnas measurement, beside SpikingJelly's and the ReLU twin's of the same cell."""
    cells = {(r["net"], r["scale"], r["T"], r["impl"], r["phase"]): r for r in runs if r.get("section") == "throughput"}
    rows = []
    for (net, scale, t, impl, phase), mine in cells.items():
        if impl != "snnas":
            continue
        zoo = cells.get((net, scale, t, "spikingjelly", phase), {}).get("images_per_s")
        ann = cells.get((net, scale, 1, "ann", phase), {}).get("images_per_s")
        ours = mine["images_per_s"]
        rows.append({"net": net, "scale": scale, "T": t, "phase": phase, "batch": mine["batch"],
                     "peak_gib": mine.get("peak_gib"), "snnas": ours, "spikingjelly": zoo,
                     "vs_spikingjelly": _ratio(ours, zoo), "ann_t1": ann,
                     "vs_ann_t1": _ratio(ours, ann) if t == 1 else None})
    return rows


def summarize(records: list[dict], longest_t: int, cpu_proxy_s: float) -> dict[str, Any]:
    """Tables and targets (stored in the JSON and printed). ``records`` are the run's measurements."""
    runs = [r for r in records if r.get("status") == "ok"]
    rows = throughput_rows(runs)
    targets = []
    for row in (r for r in rows if r["phase"] == "train"):
        if row["T"] == longest_t and row["spikingjelly"]:
            targets.append(_target(f"{row['net']} {row['scale']} T={row['T']} trains vs SpikingJelly",
                                   row["vs_spikingjelly"], TARGET_VS_ZOO, ">="))
        if row["T"] == 1 and row["ann_t1"]:
            targets.append(_target(f"{row['net']} {row['scale']} T=1 trains vs its ReLU twin", row["vs_ann_t1"],
                                   TARGET_VS_ANN_T1, ">="))
    defaults = {(r["scale"], r["net"]): r["snnas"] for r in rows if r["T"] == 1 and r["phase"] == "train"}
    switches = [{"scale": r["scale"], "switch": r["switch"], "images_per_s": r["images_per_s"],
                 "vs_defaults": _ratio(r["images_per_s"], defaults.get((r["scale"], r["net"]))),
                 "first_epoch_s": r.get("first_epoch_s")} for r in runs if r.get("section") == "switch"]
    data = [r for r in runs if r.get("section") == "data"]
    for d in data:
        if d["augment"] == "none" and d["workers"] == 0:  # the search's default recipe
            targets.append(_target(f"data wait at {d['resolution']} px (the phase-1 step)", d["wait_share"],
                                   TARGET_DATA_WAIT, "<"))
    proxy = next((r for r in runs if r.get("section") == "proxy"), None)
    if proxy:
        targets.append(_target(f"phase-1 trial vs the 2-core CPU's {cpu_proxy_s:g} s", proxy["speedup_vs_cpu"],
                               TARGET_PROXY_SPEEDUP, ">="))
    workers = sorted((r for r in runs if r.get("section") == "workers"), key=lambda r: r["workers"])
    one = workers[0]["trials_per_hour"] if workers and workers[0]["workers"] == 1 else None
    return {"throughput": rows, "switches": switches, "data": data, "proxy": proxy,
            "groundtruth": next((r for r in runs if r.get("section") == "groundtruth"), None),
            "workers": [{"workers": w["workers"], "trials_per_hour": w["trials_per_hour"],
                         "vs_one": _ratio(w["trials_per_hour"], one)} for w in workers],
            "targets": targets,
            "missing": sorted(r["id"] for r in records if r.get("status") not in ("ok", "summary"))}


def _fmt(value: Any, spec: str = ".0f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_report(summary: dict[str, Any]) -> None:
    print("\n| network | scale | T | phase | batch | peak GiB | snnas img/s | SpikingJelly | snnas / SJ "
          "| ReLU twin (T=1) | snnas / twin |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in summary["throughput"]:
        print(f"| {r['net']} | {r['scale']} | {r['T']} | {r['phase']} | {r['batch']} | {_fmt(r['peak_gib'], '.1f')} "
              f"| {_fmt(r['snnas'])} | {_fmt(r['spikingjelly'])} | {_fmt(r['vs_spikingjelly'], '.2f')} "
              f"| {_fmt(r['ann_t1'])} | {_fmt(r['vs_ann_t1'], '.2f')} |")
    print("\n| switch (DANet-B-18, T=1, training) | scale | img/s | vs defaults | first epoch s |")
    print("|---|---|---:|---:|---:|")
    for r in summary["switches"]:
        print(f"| {r['switch']} | {r['scale']} | {_fmt(r['images_per_s'])} | {_fmt(r['vs_defaults'], '.2f')} "
              f"| {_fmt(r['first_epoch_s'], '.1f')} |")
    print("\n| data path (imagenet-5, phase-1 step) | loader workers | step ms | data wait | img/s |")
    print("|---|---:|---:|---:|---:|")
    for d in summary["data"]:
        print(f"| {d['augment']} | {d['workers']} | {d['step_ms']:.1f} | {100 * d['wait_share']:.1f}% "
              f"| {d['images_per_s']:.0f} |")
    p, g = summary["proxy"], summary["groundtruth"]
    if p:
        print(f"\nphase-1 trial ({p['net']}): {p['wall_s']:.1f} s (the first in the process {p['cold_wall_s']:.1f} s), "
              f"{p['speedup_vs_cpu']:.1f}x the 2-core CPU; peak memory {_fmt(p['peak_gib'], '.3f')} GiB; "
              f"val acc {p['val_acc']:.3f}")
    if g:
        print(f"ground-truth training ({g['net']}): {g['wall_s']:.1f} s, {g['speedup_vs_cpu']:.1f}x the 2-core CPU; "
              f"test acc {g['test_acc']:.4f}")
    for w in summary["workers"]:
        print(f"{w['workers']} worker process(es) on the device: {w['trials_per_hour']:.0f} trials/h "
              f"({_fmt(w['vs_one'], '.2f')}x one)")
    print("\ntargets:")
    for t in summary["targets"]:
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['what']}: {_fmt(t['value'], '.3f')} (target {t['target']})")
    if summary["missing"]:
        print(f"\nnot measured ({len(summary['missing'])}; a re-run tries them again): " + ", ".join(summary["missing"]))
