"""Per-architecture cost of each zero-cost proxy, per family (one process, one torch thread).

    python perf/bench_zerocost.py [--families nb201,nb301] [--n 8] [--proxies synflow,zen,...]
                                  [--mirror ../shared/data/upstream] [--json out.json]

Times (wall and process CPU) ``build_model`` (fresh, seeded network) + the proxy, over the
first N archs of each family's default upstream source (read from the mirror), seed 0, a
synthetic N(0, 1) batch of
32 for the data-dependent proxies (jacov/fisher computed on it for timing only). Where the
records carry the upstream published value (``zc_<proxy>``, NASLib's), the SRCC of ours against
it over the N archs is printed too (small N: indicative only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ALL = ("synflow", "zen", "snip", "grad_norm", "nwot", "jacov", "fisher")


def bench(family: str, proxies: list[str], n: int, mirror: Path) -> dict:
    import torch
    from scipy.stats import spearmanr

    from cgbench.loaders.registry import get_family
    from cgbench.zerocost import compute_proxy, synthetic_batch

    torch.set_num_threads(1)
    fam = get_family(family)
    records = list(fam.iter_records({k: mirror / k for k in fam.sources}, limit=n))
    out = {}
    for p in proxies:
        secs, cpu, ours, theirs = [], [], [], []
        for r in records:
            shape = tuple(r.input_shape or fam.input_shape)
            batch = synthetic_batch(shape, 32, seed=0)
            t, c = time.perf_counter(), time.process_time()
            torch.manual_seed(0)
            value = compute_proxy(p, fam.build_model(r.config, cache=None), batch)
            secs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            ours.append(value)
            theirs.append(r.labels.get(f"zc_{p}"))
        paired = [(a, b) for a, b in zip(ours, theirs) if b is not None]
        srcc = float(spearmanr(*zip(*paired))[0]) if len(paired) >= 5 else None
        out[p] = {
            "n": len(secs), "median_s": statistics.median(secs), "mean_s": statistics.fmean(secs),
            "max_s": max(secs), "median_cpu_s": statistics.median(cpu), "srcc_vs_upstream": srcc,
        }  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="nb201,nb301")
    ap.add_argument("--proxies", default=",".join(ALL))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--mirror", type=Path, default=ROOT.parent / "shared" / "data" / "upstream")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results = {}
    print(
        "| family | proxy | archs | median wall s/arch | mean | max | median CPU s/arch | SRCC vs upstream |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        results[family] = bench(family, args.proxies.split(","), args.n, args.mirror)
        for p, r in results[family].items():
            srcc = "-" if r["srcc_vs_upstream"] is None else f"{r['srcc_vs_upstream']:.2f}"
            print(
                f"| {family} | {p} | {r['n']} | {r['median_s']:.2f} | {r['mean_s']:.2f} | {r['max_s']:.2f} "
                f"| {r['median_cpu_s']:.2f} | {srcc} |",
                flush=True,
            )
    print("1 process, 1 torch thread, CPU; shared machine: timings are under contention (upper bounds)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
