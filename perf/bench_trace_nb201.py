"""Benchmark: build + trace of NB-201 networks, memo on and off (CPU time, one process).

Three routes over the same random architectures, after a warm-up: (a) the project builder's
shared sub-modules (``ModuleCache``, marked ``cg_shared``) with a ``TraceCache``: the memo
replays them; (b) the same networks with ``memo=False``; (c) fresh, unshared networks traced
plainly (what a user's model gets). Reports CPU ms per architecture (``time.process_time``, so a
busy machine inflates it less than wall time) and checks that all routes give equal graphs.

Usage: python perf/bench_trace_nb201.py [--n 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from cgbench.cg import TraceCache, extract_cg
    from cgbench.loaders.base import ModuleCache
    from cgbench.loaders.nb201 import OPS, arch_string, build_network

    torch.set_num_threads(1)
    rng = random.Random(0)
    archs = [arch_string(tuple(rng.choice(OPS) for _ in range(6))) for _ in range(args.n)]
    modules, traces = ModuleCache(), TraceCache()
    for arch in archs[: max(1, args.n // 5)]:  # warm-up: every shared module traced once
        extract_cg(build_network(arch, cache=modules), (3, 32, 32), cache=traces)

    def timed(fn) -> tuple[float, list]:
        start = time.process_time()
        graphs = [fn(a) for a in archs]
        return (time.process_time() - start) / len(archs) * 1e3, graphs

    memo_ms, memo = timed(lambda a: extract_cg(build_network(a, cache=modules), (3, 32, 32), cache=traces))
    off_ms, off = timed(lambda a: extract_cg(build_network(a, cache=modules), (3, 32, 32), memo=False))
    fresh_ms, fresh = timed(lambda a: extract_cg(build_network(a), (3, 32, 32)))
    same = all(
        x.equals(y) and x.equals(z) and x.params() == y.params() == z.params()
        for x, y, z in zip(memo, off, fresh)
    )
    report = {
        "archs": args.n,
        "memo_shared_cpu_ms_per_arch": round(memo_ms, 3),
        "memo_off_cpu_ms_per_arch": round(off_ms, 3),
        "fresh_unshared_cpu_ms_per_arch": round(fresh_ms, 3),
        "memo_speedup": round(off_ms / memo_ms, 1),
        "graphs_equal": same,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not same:
        raise SystemExit("memo changed a graph")


if __name__ == "__main__":
    main()
