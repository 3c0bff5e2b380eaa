"""Benchmark: the NB-201 build, both routes in one run, and loading it into PyG batches.

Route 1 (baseline): build each architecture's network normally and trace it with
``torch.fx.symbolic_trace`` + ``ShapeProp`` (a real forward on a 1x3x32x32 tensor).
Route 2 (cgbench): ``build_family("nb201")``: shared sub-modules + memoised proxy tracing,
all CPUs, zstd Parquet shards, manifest, atomic publication.
Then: all graphs of the built store into PyG batches, in a fresh process (time, peak RSS).

Usage: python perf/bench_build_nb201.py --mirror ../shared/data/upstream [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD_SCRIPT = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch_geometric  # noqa: F401  (import time reported separately)
from cgbench.benchmarks.store import open_dataset
t1 = time.perf_counter()
ds = open_dataset("nb201", sys.argv[1])
graphs = nodes = 0
for batch in ds.pyg_batches(512):
    graphs += batch.num_graphs
    nodes += batch.num_nodes
t2 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"graphs": graphs, "nodes": nodes, "import_s": t1 - t0, "load_s": t2 - t1, "peak_rss_mb": rss}
print(json.dumps(out))
"""


def baseline_ms_per_arch(n: int, seed: int = 0) -> float:
    import torch
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    from cgbench.loaders.nb201 import OPS, arch_string, build_network

    torch.set_num_threads(1)
    rng = random.Random(seed)
    archs = [arch_string(tuple(rng.choice(OPS) for _ in range(6))) for _ in range(n)]
    x = torch.zeros(1, 3, 32, 32)
    start = time.perf_counter()
    for arch in archs:
        gm = symbolic_trace(build_network(arch))
        ShapeProp(gm).propagate(x)
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", default=os.environ.get("CGBENCH_MIRROR"))
    parser.add_argument("--baseline-archs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from cgbench.benchmarks.build import build_family

    base_ms = baseline_ms_per_arch(args.baseline_archs)
    with tempfile.TemporaryDirectory() as root:
        result = build_family("nb201", root=root, mirror=args.mirror, workers=args.workers)
        ours_ms = result.seconds / result.rows * 1e3
        load = json.loads(subprocess.check_output([sys.executable, "-c", LOAD_SCRIPT, root], text=True))
    report = {
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "baseline_fx_shapeprop_ms_per_arch": round(base_ms, 2),
        "build_rows": result.rows,
        "build_total_s": round(result.seconds, 2),
        "build_ms_per_arch": round(ours_ms, 3),
        "speedup_per_arch": round(base_ms / ours_ms, 1),
        "pyg_graphs": load["graphs"],
        "pyg_load_s": round(load["load_s"], 3),
        "pyg_import_s": round(load["import_s"], 3),
        "pyg_peak_rss_mb": round(load["peak_rss_mb"], 1),
        "targets": {"build_total_s": 60, "speedup_per_arch": 20, "pyg_load_s": 2, "pyg_peak_rss_mb": 1024},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
