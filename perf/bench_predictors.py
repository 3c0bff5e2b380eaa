"""k-GNN throughput: training graphs/s (one process, one torch thread, two seeds side by side) and
inference graphs/s over every built graph.

    python perf/bench_predictors.py [--family nb101] [--n 2000] [--epochs 1] [--procs 2]

Targets (issue 11): training >= 1,000 NB-101 graphs/s per process, inference >= 5,000 graphs/s.
The script prints what it measures; on a shared machine say so beside the figures (the
per-CPU-second figures come from process CPU time and do not count other jobs' time).
Training time includes the node classes (computed once per fit); inference is timed twice per
family: a cold pass (featurise, node classes, model) and a second pass on the same featurised
graphs, which is what scoring a family with several models costs per model.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import warnings


def _train(args: tuple) -> dict:
    family, n, epochs, seed, root = args
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from cgbench.benchmarks.tasks import LABELS
    from cgbench.eval.protocols import prepare_task
    from cgbench.predictors.features import featurise, node_classes
    from cgbench.predictors.gnn import KGNN

    prep = prepare_task(f"{family}/{next(iter(LABELS[family]))}:in-family", root=root)
    archs, labels = prep.train.archs[:n], prep.train.labels[:n]
    t0 = time.perf_counter()
    gb = featurise(archs, "feat/gennape-1")
    t_feat = time.perf_counter() - t0
    p = KGNN(seed=seed, epochs=epochs, max_valid=None)
    p.model = p._build()
    c0 = time.process_time()
    node_classes(gb, len(p.model.encoder.convs))  # what _train_loop does once per fit
    c_classes = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    p._train_loop(p.model, gb, labels, epochs=epochs, batch_size=32, lr=1e-4)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seed": seed,
        "graphs": len(gb) * epochs,
        "mean_nodes": float(gb.num_nodes.mean()),
        "featurise_s": t_feat,
        "classes_cpu_s": c_classes,
        "epoch_graphs_per_cpu_s": len(gb) * epochs / max(c_train - c_classes, 1e-9),
        "train_s": t_train,
        "train_graphs_per_s": len(gb) * epochs / t_train,
        "train_cpu_s": c_train,
        "train_graphs_per_cpu_s": len(gb) * epochs / c_train,
    }


def _infer(families: list[str], root, a_batch: int = 1024) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from cgbench.benchmarks.store import open_dataset
    from cgbench.benchmarks.tasks import is_label_column
    from cgbench.eval.data import DataSource, column_names
    from cgbench.predictors.features import featurise
    from cgbench.predictors.gnn import KGNN

    p = KGNN(seed=0)
    p.model = p._build()
    out = []
    for fam in families:
        try:
            ds = open_dataset(fam, root=root)
        except Exception as err:  # not built
            out.append({"family": fam, "skipped": f"{type(err).__name__}: {err}"[:120]})
            continue
        hidden = frozenset(c for c in column_names(ds) if is_label_column(c))
        archs = DataSource(ds, fam, hidden).all()
        t0, c0 = time.perf_counter(), time.process_time()
        gb = featurise(archs, "feat/gennape-1")
        t1 = time.perf_counter()
        scores = p._scores(p.model, gb, batch=a_batch)
        t2, c2 = time.perf_counter(), time.process_time()
        p._scores(p.model, gb, batch=a_batch)  # warm: the node classes are kept with gb
        t3, c3 = time.perf_counter(), time.process_time()
        out.append(
            {
                "family": fam,
                "graphs": len(scores),
                "mean_nodes": float(gb.num_nodes.mean()),
                "featurise_s": t1 - t0,
                "predict_s": t2 - t1,
                "graphs_per_s": len(scores) / (t2 - t0),
                "predict_graphs_per_s": len(scores) / (t2 - t1),
                "graphs_per_cpu_s": len(scores) / (c2 - c0),
                "warm_predict_s": t3 - t2,
                "warm_graphs_per_s": len(scores) / (t3 - t2),
                "warm_graphs_per_cpu_s": len(scores) / (c3 - c2),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="nb101")
    ap.add_argument("--n", type=int, default=2000, help="training graphs per process")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2, help="seeds trained side by side")
    ap.add_argument("--root", default=None)
    ap.add_argument(
        "--infer", default="nb101,nb201,nb301,nb_macro,anb,ofa_mbv3", help="families for inference"
    )
    ap.add_argument("--batch", type=int, default=1024, help="graphs per inference batch")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    jobs = [(a.family, a.n, a.epochs, s, a.root) for s in range(a.procs)]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(a.procs) as pool:
        train = pool.map(_train, jobs)
    wall = time.perf_counter() - t0
    infer = _infer([f for f in a.infer.split(",") if f], a.root, a.batch)
    total_graphs = sum(r.get("graphs", 0) for r in infer)
    total_s = sum(r.get("featurise_s", 0) + r.get("predict_s", 0) for r in infer)
    total_cpu = sum(r["graphs"] / r["graphs_per_cpu_s"] for r in infer if "graphs_per_cpu_s" in r)
    report = {
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "train": train,
        "train_wall_s": wall,
        "infer": infer,
        "infer_total_graphs_per_s": total_graphs / total_s if total_s else None,
        "infer_total_graphs_per_cpu_s": total_graphs / total_cpu if total_cpu else None,
    }
    for r in train:
        print(
            f"train seed {r['seed']}: {r['graphs']} graphs ({r['mean_nodes']:.0f} nodes) "
            f"in {r['train_s']:.1f} s "
            f"= {r['train_graphs_per_s']:.0f} graphs/s wall, "
            f"{r['train_graphs_per_cpu_s']:.0f} per CPU-second "
            "(1 thread; target 1,000); "
            f"node classes (once per fit) {r['classes_cpu_s']:.2f} CPU-s, "
            f"epochs alone {r['epoch_graphs_per_cpu_s']:.0f} graphs per CPU-second"
        )
    for r in infer:
        if "skipped" in r:
            print(f"infer {r['family']}: skipped ({r['skipped']})")
        else:
            print(
                f"infer {r['family']}: {r['graphs']} graphs ({r['mean_nodes']:.0f} nodes) "
                f"{r['graphs_per_s']:.0f} graphs/s incl. featurising "
                f"({r['predict_graphs_per_s']:.0f} model only; "
                f"{r['graphs_per_cpu_s']:.0f} per CPU-second); "
                f"again (node classes kept): {r['warm_graphs_per_s']:.0f} graphs/s, "
                f"{r['warm_graphs_per_cpu_s']:.0f} per CPU-second"
            )
    if report["infer_total_graphs_per_s"]:
        print(f"infer all built graphs: {report['infer_total_graphs_per_s']:.0f} graphs/s (target 5,000)")
    warm_s = sum(r.get("warm_predict_s", 0) for r in infer)
    warm_cpu = sum(r["graphs"] / r["warm_graphs_per_cpu_s"] for r in infer if "warm_graphs_per_cpu_s" in r)
    if warm_s:
        report["infer_warm_graphs_per_s"] = total_graphs / warm_s
        report["infer_warm_graphs_per_cpu_s"] = total_graphs / warm_cpu
        print(
            f"infer all built graphs again (featurised, node classes kept): {total_graphs / warm_s:.0f} "
            f"graphs/s, {total_graphs / warm_cpu:.0f} per CPU-second"
        )
    if report["infer_total_graphs_per_cpu_s"]:
        print(f"infer all built graphs: {report['infer_total_graphs_per_cpu_s']:.0f} graphs per CPU-second")
    print(f"load average {report['machine']['load_avg']} on {os.cpu_count()} CPUs (shared machine?)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
