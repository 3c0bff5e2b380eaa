"""Timings of the labelled-family builds of issue #9 (targets on a 2-core machine):

- the NB-101 hash -> spec index, built from scratch: <= 10 min;
- ``cgbench build nb101`` (nasbench-vis 20k + NASLib 500) once the index is cached: <= 60 s;
- ``cgbench build nb_macro`` and ``cgbench build anb``: <= 30 s each.

Usage::

    PYTHONPATH=$PWD python perf/bench_build_labels.py --mirror ../shared/data/upstream \\
        [--root DIR] [--workers N] [--only index,nb101,nb_macro,anb] [--fidelity]

``--root`` defaults to a fresh temporary directory (the index goes to ``ROOT/index`` through
``$CGBENCH_NB101_INDEX``, so it is rebuilt from scratch). ``--fidelity`` also prints, from the
built stores, how our params / FLOPs compare with the upstream figures. Prints one JSON line per
step. Run on an idle machine for reference figures (the numbers in docs/nb_macro_anb.md were
taken on a contended shared machine, and say so).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TARGETS = {"index": 600, "nb101": 60, "nb_macro": 30, "anb": 30}


def _fidelity(name: str, root: Path) -> dict:
    import numpy as np

    from cgbench.benchmarks.store import open_dataset
    from cgbench.cg import count_flops

    ds = open_dataset(name, root=root)
    if name == "nb101":
        t = ds.table(columns=["params", "params_upstream", "label_source"])
        p, up = np.asarray(t.column("params")), np.asarray(t.column("params_upstream")) * 1e6
        return {"params_equal": int((p == np.round(up)).sum()), "rows": len(p)}
    if name == "nb_macro":
        t = ds.table(columns=["params", "params_upstream", "flops", "flops_upstream"])
        eq = lambda a, b: int((np.asarray(t.column(a)) == np.asarray(t.column(b))).sum())  # noqa: E731
        return {
            "params_equal": eq("params", "params_upstream"),
            "macs_equal": eq("flops", "flops_upstream"),
            "rows": t.num_rows,
        }
    # anb: params ratio and thop-FLOPs ratio need the graphs for the FLOPs convention
    from cgbench.cg import TraceCache, extract_cg
    from cgbench.loaders import anb as anb_loader
    from cgbench.loaders.base import ModuleCache

    t = ds.table(columns=["arch_id", "params", "params_upstream", "flops", "macs_upstream"])
    params = np.asarray(t.column("params")) / 1e6 / np.asarray(t.column("params_upstream"))
    macs = np.asarray(t.column("flops")) / 1e6 / np.asarray(t.column("macs_upstream"))
    modules, traces = ModuleCache(), TraceCache()
    thop = []
    for arch, up in zip(t.column("arch_id").to_pylist(), t.column("macs_upstream").to_pylist(), strict=True):
        cg = extract_cg(
            anb_loader.build_network(arch, cache=modules), anb_loader.ANB.input_shape, cache=traces
        )
        thop.append(count_flops(cg, "thop") / 1e6 / up)
    q = lambda a: [float(x) for x in np.quantile(a, [0, 0.01, 0.5, 0.99, 1])]  # noqa: E731
    return {
        "rows": t.num_rows,
        "params_ratio_q0_1_50_99_100": q(params),
        "cgbench_macs_ratio_q": q(macs),
        "thop_flops_ratio_q": q(np.asarray(thop)),
        "within_1pct": int(((abs(params - 1) <= 0.01) & (abs(np.asarray(thop) - 1) <= 0.01)).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True)
    parser.add_argument("--root", default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="index,nb101,nb_macro,anb")
    parser.add_argument("--fidelity", action="store_true")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="cgbench_bench_labels_"))
    os.environ.setdefault("CGBENCH_NB101_INDEX", str(root / "index"))
    from cgbench.benchmarks.build import build_family
    from cgbench.loaders import nb101

    steps = args.only.split(",")
    if "index" in steps:
        t0 = time.perf_counter()
        index = nb101.hash_index(workers=args.workers)
        secs = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "step": "index",
                    "seconds": round(secs, 1),
                    "hashes": len(index),
                    "workers": args.workers,
                    "target_s": TARGETS["index"],
                }
            ),
            flush=True,
        )
    for name in ("nb101", "nb_macro", "anb"):
        if name not in steps:
            continue
        t0 = time.perf_counter()
        result = build_family(name, root=root, mirror=args.mirror, workers=args.workers)
        secs = time.perf_counter() - t0
        line = {
            "step": name,
            "seconds": round(secs, 1),
            "rows": result.rows,
            "workers": args.workers,
            "target_s": TARGETS[name],
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        }
        if args.fidelity:
            line["fidelity"] = _fidelity(name, root)
        print(json.dumps(line), flush=True)
    print(json.dumps({"root": str(root)}))


if __name__ == "__main__":
    main()
