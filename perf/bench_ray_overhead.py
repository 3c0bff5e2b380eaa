"""Ray's overhead versus local multiprocessing for the NB-201 build (goal: <= 15 % slower on 2
cores), and a projection of wall times on 1, 8 and 64 nodes from measured per-unit costs.

Usage (as root: the Ray cluster runs inside a private network namespace, see tests/ray_netns.py)::

    PYTHONPATH=$PWD python perf/bench_ray_overhead.py --mirror ../shared/data/upstream \\
        [--limit 2000] [--chunk-size 100] [--nb101-sample 4000] [--cores-per-node 2]

Steps: (1) ``build nb201`` of ``--limit`` archs with the local pool (2 workers); (2) the same
build through ``RayEngine`` on a two-node Ray cluster (head + worker node, 1 CPU each, on
127.0.0.1) -- both builds must give byte-identical shards; (3) ``--nb101-sample`` random NB-101
cells with the local pool, for NB-101's per-cell cost. Then prints the overhead and a table of
projected wall time for NB-101 (all 423,624 cells), zero-cost proxies on NB-301 (10k archs x 4
proxies) and the full reproduction grid, on 1, 8 and 64 nodes of ``--cores-per-node`` cores each.

Projection model: every workload is a list of units (build chunks, proxy batches, training jobs)
with a cost in CPU-seconds (NB-101: CPU time of the local build, so contention does not inflate
it); every unit is slowed by Ray's measured overhead ratio; units are placed
longest-first on ``nodes x cores`` slots (the grid's fine-tuning jobs start after its training
jobs); the measured cluster start is added once. Per-unit costs: NB-101 cells measured here;
proxy seconds per (arch, proxy) from issue #13 (30 CPU-hours for 10k x 4, override with
``--proxy-s-per-arch``); grid job lengths from PREDICTORS.md section 3.2 (quoted, not measured
here). On a contended shared machine the ratios are noisy: repeat and report the load.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

NB101_CELLS = 423_624
NB301_ARCHS, NB301_PROXIES, PROXY_BATCH = 10_000, 4, 100
# PREDICTORS.md section 3.2: minutes per seed (CL: 45-60 -> 52.5), fine-tuning 30-45 s per
# (model, family, seed); models GCN, GIN, k-GNN + 4 CL variants, 5 seeds, 8 target families.
GRID_TRAIN_MIN = {"k-GNN": 25.0, "GCN": 40.0, "GIN": 40.0} | {f"CL-{i}": 52.5 for i in range(1, 5)}
GRID_SEEDS, GRID_FAMILIES, GRID_FT_S = 5, 8, 37.5


def makespan(costs: list[float], slots: int) -> float:
    """Longest-processing-time-first list scheduling of ``costs`` on ``slots`` identical slots."""
    loads = [0.0] * slots
    heapq.heapify(loads)
    for c in sorted(costs, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + c)
    return max(loads)


def _local_build(family, root: Path, **kw) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its reaped workers) of a 2-worker build."""
    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.engines import LocalEngine

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    build_family(family, root=root, engine=LocalEngine(2), offline=True, **kw)
    return time.perf_counter() - t0, cpu() - c0


def _hms(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--nb101-sample", type=int, default=4000)
    parser.add_argument("--cores-per-node", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="builds per engine (best one counts)")
    parser.add_argument("--proxy-s-per-arch", type=float, default=30 * 3600 / (NB301_ARCHS * NB301_PROXIES))
    args = parser.parse_args()
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    import ray_netns

    reason = ray_netns.netns_available()
    if reason:
        sys.exit(f"cannot run the Ray cluster: {reason}")
    from cgbench.loaders.nb101 import NB101

    base = Path(tempfile.mkdtemp(prefix="cgbench_bench_ray_"))
    kw = {"mirror": args.mirror, "limit": args.limit, "chunk_size": args.chunk_size}
    load0 = os.getloadavg()[0]
    local = [_local_build("nb201", base / f"local{i}", **kw) for i in range(args.repeat)]
    spec = {"out": str(base / "ray.json"), "nodes": 2, **kw}
    spec["scenarios"] = [["build", str(base / f"ray{i}")] for i in range(args.repeat)]
    spec["source_date_epoch"] = int(os.environ["SOURCE_DATE_EPOCH"])
    ray_run = ray_netns.run_in_netns(spec, timeout=3600)
    ray_s = [b["seconds"] for b in ray_run["builds"]]
    same = all(
        p.read_bytes() == (base / f"ray{i}" / "nb201" / p.name).read_bytes()
        for i in range(args.repeat)
        for p in (base / "local0" / "nb201").iterdir()
    )
    t_nb101, cpu_nb101 = _local_build(
        NB101(random_specs=args.nb101_sample, seed=0), base / "nb101", chunk_size=1000
    )
    t_local, t_ray = min(t for t, _ in local), min(ray_s)
    overhead = t_ray / t_local - 1
    measured = {
        "nb201_archs": args.limit,
        "units": -(-args.limit // args.chunk_size),
        "local_2_workers_s": [round(t, 1) for t, _ in local],
        "ray_2_nodes_x_1_cpu_s": [round(t, 1) for t in ray_s],
        "ray_overhead_best_vs_best": f"{overhead:+.1%}",
        "goal": "<= +15%",
        "identical_shards": same,
        "cluster_start_s": round(ray_run["cluster_start_s"], 1),
        "nb201_cpu_ms_per_arch": round(min(c for _, c in local) / args.limit * 1e3, 2),
        "nb101_cpu_ms_per_cell": round(cpu_nb101 / args.nb101_sample * 1e3, 2),
        "nb101_wall_s": round(t_nb101, 1),
        "load_avg_1m_before_after": [round(load0, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(measured), flush=True)

    cell = cpu_nb101 / args.nb101_sample
    slow = 1 + max(0.0, overhead)  # Ray's measured overhead, on every unit
    workloads = {
        f"NB-101 build, {NB101_CELLS:,} cells (1,000/chunk)": [
            [min(1000, NB101_CELLS - i) * cell for i in range(0, NB101_CELLS, 1000)]
        ],
        f"NB-301 proxies, {NB301_ARCHS:,} archs x {NB301_PROXIES}": [
            [PROXY_BATCH * args.proxy_s_per_arch] * (NB301_ARCHS * NB301_PROXIES // PROXY_BATCH)
        ],
        "full reproduction grid (7 models x 5 seeds + fine-tuning)": [
            [m * 60 for m in GRID_TRAIN_MIN.values() for _ in range(GRID_SEEDS)],
            [GRID_FT_S] * (len(GRID_TRAIN_MIN) * GRID_SEEDS * GRID_FAMILIES),
        ],
    }
    nodes = (1, 8, 64)
    cores = args.cores_per_node
    columns = " | ".join(f"{n} node{'s' * (n > 1)}" for n in nodes)
    header = f"| workload | units | CPU-hours | {columns} |"
    print(f"\nProjected wall time on Ray, nodes of {cores} cores (cluster start and Ray's per-unit overhead "
          "included):\n")  # fmt: skip
    print(header)
    print("|" + "---|" * (3 + len(nodes)))
    for name, phases in workloads.items():
        n_units = sum(len(p) for p in phases)
        cpu_h = sum(sum(p) for p in phases) / 3600
        walls = []
        for n in nodes:
            wall = ray_run["cluster_start_s"] + sum(
                makespan([c * slow for c in p], n * cores) for p in phases
            )
            walls.append(_hms(wall))
        print(f"| {name} | {n_units:,} | {cpu_h:.1f} | " + " | ".join(walls) + " |")
    print(f"\n(stores under {base})")


if __name__ == "__main__":
    main()
