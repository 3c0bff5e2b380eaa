"""Benchmark: random access to a built store (``ds[i]``, ``ds[[i, j, ...]]``) through the row-group
index read from the Parquet footers.

Targets (issue 8 §5, NB-201): one graph in <= 5 ms; 1,000 random graphs in <= 1 s.

Measured, each on a dataset whose decoded-row-group cache is emptied first (nothing is reused
between timings except the open files and the index):
- ``open``: ``open_dataset`` (manifest, the cheap size + stamp check of every shard);
- ``index``: the first ``ds[i]`` (reads every footer, then one row group);
- ``one graph``: ``ds[i]`` for ``--singles`` random rows, cache emptied before each (each reads
  and decodes one row group): median, 95th percentile, max;
- ``1000 random``: ``ds[list of --n random rows]`` (each needed row group read once), ``--repeat``
  times; and the same rows fetched one by one (``[ds[i] for i in rows]``, small LRU cache).

Wall-clock figures depend on the machine's load; CPU times (all threads of this process) are
reported beside them.
Usage: python perf/bench_random_access.py [--root DIR] [--family nb201] [--n 1000] [--json out.json]
(``--root`` defaults to $CGBENCH_HOME; build first with ``cgbench build nb201``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--family", default="nb201")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np

    from cgbench.benchmarks.store import open_dataset

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    ds = open_dataset(args.family, args.root)
    t_open = time.perf_counter() - t0
    n_rows = len(ds)
    t0 = time.perf_counter()
    ds[int(rng.integers(n_rows))]
    t_first = time.perf_counter() - t0
    groups = len(ds._groups)

    singles, singles_cpu = [], []
    for i in rng.integers(n_rows, size=args.singles):
        ds._cache.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        ds[int(i)]
        singles.append(time.perf_counter() - t0)
        singles_cpu.append(time.process_time() - c0)

    batch_times, batch_cpu, loop_times = [], [], []
    for _ in range(args.repeat):
        rows = rng.integers(n_rows, size=args.n).tolist()
        ds._cache.clear()
        c0, t0 = time.process_time(), time.perf_counter()
        graphs = ds[rows]
        batch_times.append(time.perf_counter() - t0)
        batch_cpu.append(time.process_time() - c0)
        assert len(graphs) == args.n
        ds._cache.clear()
        t0 = time.perf_counter()
        for i in rows:
            ds[i]
        loop_times.append(time.perf_counter() - t0)

    singles_ms = sorted(1000 * s for s in singles)
    result = {
        "family": args.family,
        "rows": n_rows,
        "shards": len(ds.files),
        "row_groups": groups,
        "store_bytes": sum(f.stat().st_size for f in ds.files),
        "open_s": round(t_open, 4),
        "first_access_s": round(t_first, 4),
        "one_graph_ms": {
            "median": round(statistics.median(singles_ms), 2),
            "p95": round(singles_ms[int(0.95 * (len(singles_ms) - 1))], 2),
            "max": round(singles_ms[-1], 2),
        },
        "one_graph_cpu_ms_median": round(1000 * statistics.median(singles_cpu), 2),
        f"{args.n}_random_batch_cpu_s_median": round(statistics.median(batch_cpu), 3),
        f"{args.n}_random_batch_s": {
            "median": round(statistics.median(batch_times), 3),
            "min": round(min(batch_times), 3),
            "max": round(max(batch_times), 3),
        },
        f"{args.n}_random_one_by_one_s": {
            "median": round(statistics.median(loop_times), 3),
            "min": round(min(loop_times), 3),
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
