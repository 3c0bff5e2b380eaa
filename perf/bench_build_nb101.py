"""Benchmark: NAS-Bench-101 at scale through the real build engine (bounded memory, all cores).

Builds ``NB101(random_specs=N, seed=S)`` (N valid random cells, unique module hashes: the
official sampler) with ``cgbench.benchmarks.build.build_family`` into a temporary root, and
reports archs/s, the peak resident memory of the whole process tree (sampled every 0.2 s, the
sum over the main process and its workers) and of the largest single process, and the projected
time for all 423,624 cells. The spec generator alone is timed too (it runs in the main process,
ahead of the workers).

``--interrupt-after S`` first starts the same build in a child process, kills it after S seconds,
then runs it again and reports how many chunks were resumed (the resumability check).

Usage: python perf/bench_build_nb101.py [--n 50000] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FULL_SPACE = 423_624

CHILD = """
import sys
from cgbench.benchmarks.build import build_family
from cgbench.loaders.nb101 import NB101
n, seed, workers, chunk = (int(v) for v in sys.argv[1:5])
build_family(NB101(random_specs=n, seed=seed), root=sys.argv[5], workers=workers, chunk_size=chunk)
"""


class TreeRSS:
    """Samples the summed RSS of this process and its descendants in a background thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process()
        self._psutil = psutil
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        procs = [self._proc, *self._proc.children(recursive=True)]
        rss = []
        for p in procs:
            try:
                rss.append(p.memory_info().rss)
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                pass
        self.peak_total = max(self.peak_total, sum(rss))
        self.peak_single = max(self.peak_single, max(rss, default=0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def time_generator(n: int, seed: int) -> float:
    from cgbench.loaders.nb101 import random_specs

    start = time.perf_counter()
    for _ in random_specs(n, seed):
        pass
    return time.perf_counter() - start


def interrupted_then_resumed(args: argparse.Namespace, root: str) -> dict:
    """Kill a build after ``--interrupt-after`` seconds, rerun it, count resumed chunks."""
    from cgbench.benchmarks.build import build_family
    from cgbench.loaders.nb101 import NB101

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, (args.n, args.seed, args.workers, args.chunk_size)), root],
        start_new_session=True,
    )
    time.sleep(args.interrupt_after)
    if child.poll() is None:
        os.killpg(child.pid, 9)  # the child and its workers, nothing else
    child.wait()
    start = time.perf_counter()
    result = build_family(
        NB101(random_specs=args.n, seed=args.seed), root=root, workers=args.workers,
        chunk_size=args.chunk_size,
    )  # fmt: skip
    return {
        "killed_after_s": args.interrupt_after,
        "resumed_chunks": result.resumed_chunks,
        "total_chunks": -(-result.rows // args.chunk_size),
        "rerun_s": round(time.perf_counter() - start, 2),
        "rows": result.rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="random valid cells (unique hashes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--interrupt-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from cgbench.benchmarks.build import build_family
    from cgbench.loaders.nb101 import NB101

    gen_s = time_generator(args.n, args.seed)
    report: dict = {"cpus": os.cpu_count(), "workers": args.workers, "n": args.n,
                    "chunk_size": args.chunk_size, "spec_generator_s": round(gen_s, 2)}  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        with TreeRSS() as rss:
            start = time.perf_counter()
            result = build_family(
                NB101(random_specs=args.n, seed=args.seed), root=root, workers=args.workers,
                chunk_size=args.chunk_size,
            )  # fmt: skip
            seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(result.path).resolve().rglob("*.parquet"))
        rate = result.rows / seconds
        report.update(
            rows=result.rows,
            build_s=round(seconds, 2),
            archs_per_s=round(rate, 1),
            peak_rss_tree_mb=round(rss.peak_total / 2**20, 1),
            peak_rss_largest_process_mb=round(rss.peak_single / 2**20, 1),
            parquet_mb=round(size / 2**20, 1),
            projected_full_space_min=round(FULL_SPACE / rate / 60, 1),
        )
    if args.interrupt_after is not None:
        with tempfile.TemporaryDirectory() as root:
            report["resume"] = interrupted_then_resumed(args, root)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
