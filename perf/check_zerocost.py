"""Our zero-cost proxies against NASLib's published values on NB-201 (issue 11 §3 acceptance).

    python perf/check_zerocost.py [--mirror ../shared/data/upstream] [--proxies synflow,snip,...]
                                  [--limit N] [--workers N] [--json out.json]

For each NB-201 arch of NASLib's ``zc_nasbench201.json`` (725 archs, cifar10) we build the
network with cgbench's NB-201 loader (NASLib op tuples mapped to arch strings by
``loaders.nb201.from_naslib_tuple``), compute each proxy (seed 0, a fresh network per proxy), and
report the Spearman rank correlation with NASLib's published value (zen: NASLib's
``nb201_zen.zip``), plus both against the archs' cifar10-valid accuracy.

Data: NASLib computed its data-dependent proxies on one CIFAR-10 training batch of 32; this
offline check uses a seeded N(0, 1) batch of 32 with random labels instead (CIFAR-10 cannot be
downloaded here), so snip / grad_norm / nwot / jacov / fisher are flagged *synthetic*. synflow
(all-ones input) and zen (Gaussian input) are data-free and comparable as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NASLIB_NB201 = "nb201/naslib_zc_nasbench201_725archs.json"
NASLIB_ZEN = "nb201/naslib_run_results_benchmarks_nb201_zen.zip"
ALL = ("synflow", "zen", "snip", "grad_norm", "nwot", "jacov", "fisher")


def _naslib_zen(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.endswith(".json") and "--cifar10--" in name:
                for item in json.loads(zf.read(name)):
                    out[item["arch"]] = float(item["zen"]["score"])
    return out


def _compute(job: tuple[list[str], list[str]]) -> list[dict[str, tuple[float, float]]]:
    import torch

    from cgbench.loaders.nb201 import build_network, from_naslib_tuple
    from cgbench.zerocost import compute_proxy, synthetic_batch

    torch.set_num_threads(1)
    keys, proxies = job
    batch = synthetic_batch((3, 32, 32), 32, seed=0)
    rows = []
    for key in keys:
        row = {}
        for p in proxies:
            torch.manual_seed(0)
            t, c = time.perf_counter(), time.process_time()
            net = build_network(from_naslib_tuple(key))
            row[p] = (compute_proxy(p, net, batch), time.perf_counter() - t, time.process_time() - c)
        rows.append(row)
    return rows


def compare(
    mirror: Path, proxies: list[str], *, limit: int | None = None, workers: int | None = None
) -> dict:
    """``{proxy: {srcc, n, ours_vs_acc, naslib_vs_acc, seconds_per_arch, synthetic}}``."""
    data = json.loads((mirror / NASLIB_NB201).read_text())["cifar10"]
    zen = _naslib_zen(mirror / NASLIB_ZEN) if "zen" in proxies else {}
    keys = list(data)[:limit]
    workers = workers or os.cpu_count() or 1
    chunks = [keys[i : i + 8] for i in range(0, len(keys), 8)]
    if workers == 1:
        results = [r for c in chunks for r in _compute((c, proxies))]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = [r for rows in pool.map(_compute, [(c, proxies) for c in chunks]) for r in rows]
    table = {}
    for p in proxies:
        # NASLib's file lacks some proxies for some archs: compare where it has a finite value
        def published(k: str, p: str = p) -> float | None:
            v = zen.get(k) if p == "zen" else (data[k].get(p) or {}).get("score")
            return float(v) if v is not None and np.isfinite(v) else None

        pairs = [(r[p], published(k), data[k]["val_accuracy"]) for k, r in zip(keys, results)]
        pairs = [(o, t, a) for o, t, a in pairs if t is not None]
        ours = np.array([o[0] for o, _, _ in pairs])
        theirs = np.array([t for _, t, _ in pairs])
        acc = np.array([a for _, _, a in pairs])
        table[p] = {
            "srcc": float(spearmanr(ours, theirs)[0]),
            "n": len(pairs),
            "ours_vs_acc": float(spearmanr(ours, acc)[0]),
            "naslib_vs_acc": float(spearmanr(theirs, acc)[0]),
            "seconds_per_arch": float(np.mean([o[1] for o, _, _ in pairs])),
            "cpu_seconds_per_arch": float(np.mean([o[2] for o, _, _ in pairs])),
            "synthetic": p not in ("synflow", "zen"),
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, default=ROOT.parent / "shared" / "data" / "upstream")
    ap.add_argument("--proxies", default=",".join(ALL))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    started = time.perf_counter()
    table = compare(args.mirror, args.proxies.split(","), limit=args.limit, workers=args.workers)
    print(f"NB-201, NASLib zc_nasbench201.json (cifar10), {next(iter(table.values()))['n']} archs, seed 0")
    print(
        "| proxy | SRCC vs NASLib | ours vs val acc | NASLib vs val acc | input | wall s/arch | CPU s/arch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p, r in table.items():
        data = "synthetic N(0,1) batch 32, random labels" if r["synthetic"] else "data-free"
        print(
            f"| {p} | {r['n']} | {r['srcc']:.3f} | {r['ours_vs_acc']:.3f} | {r['naslib_vs_acc']:.3f} "
            f"| {data} | {r['seconds_per_arch']:.2f} | {r['cpu_seconds_per_arch']:.2f} |"
        )
    print(f"wall {time.perf_counter() - started:.0f} s (shared machine: timings are under contention)")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
