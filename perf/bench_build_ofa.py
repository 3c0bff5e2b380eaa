"""Benchmark: building the GENNAPE-sized OFA samples (PN 8.2k, MBv3 7.5k, ResNet 10k) side by side.

Route 1 (baseline): build each network plainly (no module sharing) and trace it with
``torch.fx.symbolic_trace`` + ``ShapeProp`` (a real forward on a 1x3xRxR tensor), on the first
``--baseline-archs`` archs of each sample, one thread.
Route 2 (cgbench): ``build_family(<family>, sample=N)``: shared sub-modules + memoised proxy
tracing, ``--workers`` processes, zstd Parquet shards, manifest, atomic publication.

Targets (issue 15): each sample builds in <= 90 s on 2 cores; per arch >= 20x faster than route 1.
With ``--limit`` only the first N archs of each sample are built and the full time is projected
linearly (reported as such). ``--root DIR`` keeps the stores (e.g. to freeze splits from them).

Usage: python perf/bench_build_ofa.py [--workers 2] [--baseline-archs 20] [--limit N] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

SIZES = {"ofa_pn": 8200, "ofa_mbv3": 7500, "ofa_resnet": 10000}


def baseline_ms_per_arch(family: str, n: int) -> float:
    import torch
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    from cgbench.loaders.ofa import build_network, sample_configs

    torch.set_num_threads(1)
    configs = sample_configs(family, n, seed=0)
    start = time.perf_counter()
    with torch.no_grad():
        for c in configs:
            gm = symbolic_trace(build_network(family, c, width=c.get("width")))
            ShapeProp(gm).propagate(torch.zeros(1, 3, c["r"], c["r"]))
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(SIZES))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--baseline-archs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=None, help="build only N archs per family; project")
    parser.add_argument("--root", type=Path, default=None, help="keep the stores here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from cgbench.benchmarks.build import build_family
    from cgbench.loaders.registry import get_family

    report: dict = {"cpus": os.cpu_count(), "workers": args.workers, "limit": args.limit, "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for family in args.families.split(","):
            size = SIZES[family]
            base_ms = baseline_ms_per_arch(family, args.baseline_archs)
            fam = get_family(family, sample=size, seed=0)
            result = build_family(fam, root=root, offline=True, workers=args.workers, limit=args.limit)
            ours_ms = result.seconds / result.rows * 1e3
            report["families"][family] = {
                "sample": size,
                "built_rows": result.rows,
                "build_s": round(result.seconds, 2),
                "build_s_full_sample": round(ours_ms * size / 1e3, 1),
                "projected": result.rows != size,
                "build_ms_per_arch": round(ours_ms, 3),
                "baseline_fx_shapeprop_ms_per_arch": round(base_ms, 1),
                "speedup_per_arch": round(base_ms / ours_ms, 1),
            }
            print(json.dumps({family: report["families"][family]}), flush=True)
    report["targets"] = {"build_s_full_sample": 90, "speedup_per_arch": 20}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
