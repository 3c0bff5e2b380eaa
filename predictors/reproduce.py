"""``cgbench reproduce``: GENNAPE's Tables 1, 3, 5 and 6, ours beside the paper's numbers.

Steps (each cell goes through the evaluation harness, :func:`cgbench.eval.evaluate`):

1. **Train** every learned predictor the requested tables need on NB-101's train split (the
   harness's split; the dev split picks the checkpoint), one ``(predictor, seed)`` per process
   with one torch thread. Models are cached under ``OUT/cache`` by a hash of data + config +
   seed, so a rerun (or an interrupted run) trains nothing twice.
2. **Evaluate** every ``(predictor, target family, protocol)`` cell with the harness: the source
   model comes from the cache, fine-tune cells fine-tune it on the harness's target sample.
3. **Report**: each table with ``mean ± std`` over seeds beside the paper's number
   (``cgbench/predictors/data/paper_tables.csv``, shipped with the package), the label used,
   and the reason wherever a cell cannot be filled offline; written as Markdown, CSV, JSON and
   matplotlib plots (ours vs paper per cell; predicted vs true per family).

Profiles (:data:`PROFILES`): ``smoke`` (seconds; tests), ``quick`` (reduced: <= 30 min on 2 cores,
2 seeds) and ``full`` (the paper's settings: all NB-101 train archs, 40 epochs, 5 seeds; a GPU
or an overnight run).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from cgbench.benchmarks.engines import Engine, EngineError, get_engine
from cgbench.benchmarks.tasks import TaskError
from cgbench.eval.predictor import PredictorSpec, predictor_spec
from cgbench.eval.protocols import evaluate, prepare_task
from cgbench.eval.validation import EvalError

__all__ = [
    "PROFILES",
    "Profile",
    "TABLES",
    "TARGETS",
    "ReproduceError",
    "paper_table",
    "reproduce",
    "predictor_config",
]

log = logging.getLogger(__name__)

TABLES = ("T1", "T3", "T5", "T6")
DEFAULT_SOURCE = "nb101"
LEARNED = ("kgnn", "gcn", "gin", "gennape", "cgb-rank")
PAPER_NAMES = {"gennape": "gennape", "kgnn": "kgnn", "gcn": "gcn", "gin": "gin"}
# Table 3's GENNAPE row: the paper's full model (CL + FCM + FLOPs transform)
T3_PAPER_NAMES = {"kgnn": "kgnn", "gcn": "gcn", "gin": "gin", "gennape": "cl_fcm_t"}
T1_PROXIES = ("synflow", "jacov", "fisher", "snip")


class ReproduceError(EvalError, ValueError):
    """A request ``cgbench reproduce`` cannot run (unknown table, profile or device)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A target family of Tables 5/6: its task stem, label note, or why it cannot run offline."""

    family: str
    stem: str | None  # "FAMILY[-SUBSET]/LABEL" (source and protocol added), None: not offline
    label: str
    reason: str = ""


TARGETS: tuple[Target, ...] = (
    Target(
        "nb201",
        "nb201-nonone/cifar10-valid",
        "NB-201 cifar10-valid val. acc. (4,096 none-free cells)",
        "paper: cifar10 ori-test accuracy (needs the official .pth: `--opt official=`)",
    ),
    Target("nb301", "nb301/cifar10", "NB-301 surrogate acc. (NASLib's 725 archs; paper: 10k)"),
    Target(
        "ofa_mbv3",
        "ofa_mbv3-dynast/imagenet",
        "OFA-MBv3 w1.0 supernet top-1 (DyNAS-T 1,668; paper: 7.5k w1.2)",
    ),
    Target("nb_macro", "nb_macro/cifar10", "NAS-Bench-Macro CIFAR-10 test acc. (not in paper)"),
    Target("anb", "anb/imagenet", "Accel-NASBench ImageNet top-1 (not in paper)"),
    Target(
        "ofa_pn",
        None,
        "OFA-PN w1.3 top-1",
        "labels not offline: build with `--opt gennape_cache=gpi_ofa_comp_graph_cache.pkl`",
    ),
    Target(
        "ofa_resnet",
        None,
        "OFA-ResNet top-1",
        "labels not offline: build with `--opt gennape_cache=gpi_ofa_resnet_comp_graph_cache.pkl`",
    ),
    Target("hiaml", None, "HiAML CIFAR-10", "HiAML labels: import GENNAPE's release (HF kgmills/GENNAPE)"),
    Target("inception", None, "Inception CIFAR-10", "Inception labels: import GENNAPE's release"),
    Target("two_path", None, "Two-Path CIFAR-10", "Two-Path labels: import GENNAPE's release"),
)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one reproduction run (every other setting is the predictor's default)."""

    name: str
    seeds: tuple[int, ...]
    max_train: int | None
    max_valid: int | None
    epochs: int
    cl_epochs: int
    gennape_members: int
    ours_members: int | None  # None: cgb-rank's own ensemble size (``CgbRankConfig.n_members``)
    ours_epochs: int | None  # None: cgb-rank's own length (``CgbRankConfig.epochs`` and ``max_steps``)
    fine_tune_epochs: int
    targets: tuple[str, ...]
    reduced: bool
    workers: int = 2
    source: str = DEFAULT_SOURCE  # the training family of Tables 3/5/6
    gennape_epochs: int | None = None  # epochs of each GENNAPE member (None: ``epochs``)

    @property
    def source_task(self) -> str:
        """The source family's in-family task (its train / valid split trains the models)."""
        from cgbench.benchmarks.tasks import LABELS

        if self.source not in LABELS:
            raise ReproduceError(f"unknown source family {self.source!r}; known: {', '.join(LABELS)}")
        return f"{self.source}/{next(iter(LABELS[self.source]))}:in-family"

    def task(self, target: Target, protocol: str) -> str:
        return f"{self.source}->{target.stem}:{protocol}"


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", (0,), 96, 48, 1, 1, 1, 1, 1, 1, ("nb301",), True, 1),
    # quick: sized for an idle 2-core machine at today's training speed (docs/reproduce.md has
    # the per-unit costs and the arithmetic): k-GNN/GCN/GIN 4,000 NB-101 train archs x 24 epochs
    # = 3,000 Adam steps each; GENNAPE 2 members x 12 epochs after 2 CL epochs; cgb-rank 2
    # members at their own length (63 Adam steps); fine-tune 5 epochs of the 50 archs. Measured
    # 514 s in all on 2 idle cores (docs/reproduce.md, run of 2026-12-03 21:48): margin for the
    # 30 min promise; a loaded machine is slower.
    "quick": Profile(
        "quick",
        (0, 1),
        4000,
        500,
        24,
        2,
        2,
        2,
        None,  # cgb-rank's own training length (CgbRankConfig.max_steps)
        5,
        ("nb201", "nb301", "ofa_mbv3", "nb_macro", "anb"),
        True,
        gennape_epochs=12,
    ),
    "full": Profile(
        "full",
        (0, 1, 2, 3, 4),
        None,
        None,
        40,
        40,
        6,
        None,  # cgb-rank's own ensemble size
        None,  # cgb-rank's own training length: its transfer falls with longer training
        100,
        ("nb201", "nb301", "ofa_mbv3", "nb_macro", "anb"),
        False,
    ),
}


@dataclasses.dataclass(frozen=True)
class ModelCache:
    """Where a run keeps its trained models, and the digest of the predictors' code they are
    keyed on: computed once when the run starts and carried by every unit, so an evaluation cell
    finds the model the training phase made even if the code on disk changed in between."""

    path: str
    code: str

    @classmethod
    def of_run(cls, out: Path) -> ModelCache:
        from cgbench.files import source_digest

        return cls(str(out / "cache"), source_digest("cgbench.predictors"))


def predictor_config(name: str, profile: Profile, device: str, cache: ModelCache | None) -> Any:
    """The config of learned predictor ``name`` under ``profile`` (``cache``: the run's models)."""
    from cgbench.predictors.registry import PREDICTORS

    cls = PREDICTORS[name]
    common = dict(
        max_train=profile.max_train,
        max_valid=profile.max_valid,
        fine_tune_epochs=profile.fine_tune_epochs,
        device=device,
        threads=1 if device == "cpu" else None,
        cache_dir=cache.path if cache else None,
        code_digest=cache.code if cache else None,
    )
    if name == "gennape":
        extra = dict(
            epochs=profile.gennape_epochs or profile.epochs,
            cl_epochs=profile.cl_epochs,
            n_members=profile.gennape_members,
        )
    elif name == "cgb-rank":
        extra = {}
        if profile.ours_members is not None:
            extra["n_members"] = profile.ours_members
        if profile.ours_epochs is not None:  # a named length replaces the step cap too
            extra.update(epochs=profile.ours_epochs, max_steps=None)
    else:
        extra = dict(epochs=profile.epochs)
    return dataclasses.replace(cls.default_config(), **common, **extra)


def _spec(name: str, profile: Profile, device: str, cache: ModelCache | None) -> PredictorSpec:
    from cgbench.predictors.registry import PREDICTORS

    cls = PREDICTORS[name]
    cfg = predictor_config(name, profile, device, cache)

    def make(seed: int = 0):
        return cls(seed=seed, config=cfg)

    return dataclasses.replace(predictor_spec(cls, name=name), factory=make)


# ---------------------------------------------------------------------------- paper numbers
def paper_table() -> list[dict[str, Any]]:
    """The paper's numbers (``cgbench.predictors/data/paper_tables.csv``)."""
    text = resources.files("cgbench.predictors").joinpath("data/paper_tables.csv").read_text()
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        r["mean"] = float(r["mean"])
        r["std"] = float(r["std"]) if r.get("std") else None
        rows.append(r)
    return rows


def _paper_lookup() -> dict[tuple[str, str, str, str, str], tuple[float, float | None]]:
    return {
        (r["table"], r["family"], r["setting"], r["method"], r["metric"]): (r["mean"], r["std"])
        for r in paper_table()
    }


# ---------------------------------------------------------------------------- training phase
def _train_one(args: tuple) -> dict[str, Any]:
    name, seed, profile, device, cache, root = args
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    prep = prepare_task(profile.source_task, root=root)
    spec = _spec(name, profile, device, cache)
    predictor = spec.make(seed)
    try:
        predictor.fit(
            prep.train.archs,
            prep.train.labels,
            valid_graphs=prep.valid.archs,
            valid_labels=prep.valid.labels,
        )
    except Exception as err:  # one predictor failing must not stop the others
        log.exception("training %s seed %s failed", name, seed)
        return {
            "predictor": name,
            "seed": seed,
            "cached": False,
            "seconds": time.perf_counter() - t0,
            "error": f"{type(err).__name__}: {err}",
        }
    return {
        "predictor": name,
        "seed": seed,
        "cached": bool(getattr(predictor, "from_cache", False)),
        "seconds": time.perf_counter() - t0,
        "n_train": len(prep.train.labels),
    }


def _run_units(fn: Callable[[Any], Any], jobs: Sequence, engine: Engine) -> Iterator[tuple[int, Any]]:
    """``(i, fn(jobs[i]))`` for every job, as each finishes, through ``engine`` (a single job on
    the local engine runs in this process: starting a pool for it costs more than it runs)."""
    if engine.name == "local" and len(jobs) <= 1:
        yield from ((i, fn(job)) for i, job in enumerate(jobs))
        return
    with engine:
        yield from engine.map_unordered(fn, ((i, (job,)) for i, job in enumerate(jobs)))


# ---------------------------------------------------------------------------- evaluation phase
def _cells(tables: Sequence[str], profile: Profile, predictors: Sequence[str]) -> list[dict]:
    """Every (table, family, setting, task, predictors, metrics) cell group to evaluate."""
    cells = []
    if "T3" in tables:
        names = [p for p in predictors if p in T3_PAPER_NAMES]
        cells.append(
            dict(
                table="T3",
                family=profile.source,
                setting="in-family",
                task=profile.source_task,
                predictors=names,
                metrics=("srcc", "mae_pct"),
                label="NB-101 val. acc. 108 epochs, one run (paper: test acc.)",
            )
        )
    if "T5" in tables or "T6" in tables:
        for t in TARGETS:
            if t.stem is None or t.family not in profile.targets:
                continue
            for setting, proto in (("zero-shot", "zero-shot"), ("fine-tune-50", "fine-tune-50")):
                cells.append(
                    dict(
                        table="T5/T6",
                        family=t.family,
                        setting=setting,
                        task=profile.task(t, proto),
                        predictors=["flops", *predictors],
                        metrics=("srcc", "ndcg@10"),
                        label=t.label,
                    )
                )
    if "T1" in tables:
        for fam, task in (
            ("nb201", "nb201-nonone/cifar10-valid:zero-shot"),
            ("nb301", "nb301/cifar10:zero-shot"),
        ):
            cells.append(
                dict(
                    table="T1",
                    family=fam,
                    setting="zero-shot",
                    task=task,
                    predictors=["flops", *(f"zc:{p}" for p in T1_PROXIES)],
                    metrics=("srcc",),
                    label="stored proxy columns (NASLib's precomputed values)",
                )
            )
    return cells


def _eval_cell(args: tuple) -> dict[str, Any]:
    cell, profile, device, cache, root = args
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    specs = [_spec(p, profile, device, cache) if p in LEARNED else p for p in cell["predictors"]]
    out = {**cell, "results": {}, "errors": {}}
    try:
        results = evaluate(
            cell["task"], specs, root=root, metrics=cell["metrics"], seeds=profile.seeds, keep_going=True
        )
    except Exception as err:  # a family not built, a task without labels: the whole cell
        out["cell_error"] = f"{type(err).__name__}: {err}"
        out["seconds"] = time.perf_counter() - t0
        return out
    for r in results:
        if r.error:
            out["errors"][r.predictor] = r.error
            continue
        out["results"][r.predictor] = {
            m: {"mean": v.value, "std": v.std, "per_seed": list(v.per_seed)} for m, v in r.metrics.items()
        }
        out.setdefault("n_scored", r.n_scored)
        out.setdefault("official", r.split.get("official"))
    out["seconds"] = time.perf_counter() - t0
    return out


def _cell_key(cell: dict, profile: Profile, device: str, root: str | None, code: str) -> str:
    """What determines a cell's numbers: the cell, the profile, the device, its predictors'
    settings, ``code`` (the digest of the stages that compute them), the source and target
    manifests."""
    from cgbench.benchmarks.store import dataset_path
    from cgbench.benchmarks.tasks import parse_task

    task = parse_task(cell["task"])
    manifests = {}
    for fam in sorted({task.family, task.source or task.family}):
        try:
            manifests[fam] = (dataset_path(fam, root) / "manifest.json").read_bytes().decode()
        except (OSError, ValueError):
            manifests[fam] = None  # not built: the cell fails and is not cached
    settings = {
        p: dataclasses.asdict(predictor_config(p, profile, device, None))
        for p in cell["predictors"]
        if p in LEARNED
    }
    blob = json.dumps(
        [cell, dataclasses.asdict(profile), device, settings, code, manifests], sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _evaluate_cells(
    cells: list[dict], profile: Profile, device: str, out: Path, root: str | None, cache: ModelCache,
    engine: Engine, echo: Callable[[str], None] = print,
) -> list[dict]:  # fmt: skip
    """Every cell's results; a cell finished by an earlier run (``OUT/cells/<key>.json``, written
    atomically when it completed without errors) is read back, not evaluated again."""
    from cgbench.files import source_digest
    from cgbench.predictors.base import atomic_write

    # once per run: the predictors' digest pinned with the models, plus the stages around them
    code = cache.code + source_digest("cgbench.eval", "cgbench.benchmarks")
    keys = [_cell_key(c, profile, device, root, code) for c in cells]
    done: dict[int, dict] = {}
    for i, key in enumerate(keys):
        path = out / "cells" / f"{key}.json"
        if path.is_file():
            done[i] = {**json.loads(path.read_text()), "cached": True}
    todo = [i for i in range(len(cells)) if i not in done]
    jobs = [(cells[i], profile, device, cache, root) for i in todo]
    for c in done.values():
        echo(f"  {c['task']}: cached")
    for j, result in _run_units(_eval_cell, jobs, engine):  # as each ends
        i = todo[j]
        done[i] = result
        why = f" ({result['cell_error']})" if result.get("cell_error") else ""
        echo(f"  [{len(done)}/{len(cells)}] {result['task']}: {result['seconds']:.0f} s{why}")
        if not result.get("cell_error") and not result.get("errors"):
            (out / "cells").mkdir(exist_ok=True)
            atomic_write(out / "cells" / f"{keys[i]}.json", json.dumps(result, default=str).encode())
    return [done[i] for i in range(len(cells))]


# ---------------------------------------------------------------------------- rows and rendering
def _rows(cells: list[dict], profile: Profile) -> list[dict[str, Any]]:
    paper = _paper_lookup()
    rows = []
    for c in cells:
        tables = ["T5", "T6"] if c["table"] == "T5/T6" else [c["table"]]
        for table in tables:
            metric_of_table = {"T5": ("srcc",), "T6": ("ndcg@10",)}.get(table, c["metrics"])
            for pred in c["predictors"]:
                method = pred.removeprefix("zc:")
                pname = (T3_PAPER_NAMES if table == "T3" else PAPER_NAMES).get(method, method)
                for metric in metric_of_table:
                    pm = paper.get((table, c["family"], c["setting"], pname, metric))
                    res = c.get("results", {}).get(pred, {}).get(metric)
                    reason = c.get("cell_error") or c.get("errors", {}).get(pred)
                    rows.append(
                        {
                            "table": table,
                            "family": c["family"],
                            "setting": c["setting"],
                            "method": method,
                            "metric": metric,
                            "ours_mean": None if res is None else res["mean"],
                            "ours_std": None if res is None else res["std"],
                            "n_seeds": 0 if res is None else len(res["per_seed"]),
                            "paper_mean": None if pm is None else pm[0],
                            "paper_std": None if pm is None else pm[1],
                            "paper_method": pname if pm is not None else "",
                            "label": c["label"],
                            "reason": "" if res is not None else (reason or "not computed"),
                            "profile": profile.name,
                            "reduced": profile.reduced,
                            "note": _note(method),
                        }
                    )
    for t in TARGETS:
        if t.stem is not None and t.family in profile.targets:
            continue
        why = t.reason or f"not in the {profile.name} profile"
        for (table, fam, setting, method, metric), (mean, std) in paper.items():
            if fam == t.family and table in ("T5", "T6"):
                rows.append(
                    {
                        "table": table,
                        "family": fam,
                        "setting": setting,
                        "method": method,
                        "metric": metric,
                        "ours_mean": None,
                        "ours_std": None,
                        "n_seeds": 0,
                        "paper_mean": mean,
                        "paper_std": std,
                        "paper_method": method,
                        "label": t.label,
                        "reason": why,
                        "profile": profile.name,
                        "reduced": profile.reduced,
                        "note": "",
                    }
                )
    return rows


def _note(method: str) -> str:
    if method == "gennape":
        return "re-implementation"
    if method == "cgb-rank":
        return "ours"
    return ""


def _fmt(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def render_markdown(rows: list[dict[str, Any]], profile: Profile, meta: dict[str, Any]) -> str:
    """Every table as Markdown, ours beside the paper's number."""
    out = [f"# cgbench reproduce: profile `{profile.name}`", ""]
    if profile.reduced:
        out += [
            f"**Reduced setting** ({profile.name}): NB-101 training sample {profile.max_train}, "
            f"{profile.epochs} epochs, seeds {list(profile.seeds)}, fine-tune {profile.fine_tune_epochs} "
            "epochs. Not the paper's protocol; numbers are indicative only.",
            "",
        ]
    out += [
        f"Run: {meta.get('started', '')}, {meta.get('seconds', 0):.0f} s, device {meta.get('device')}.",
        "",
    ]
    titles = {
        "T1": "Table 1: zero-cost proxies, SRCC (zero-shot)",
        "T3": "Table 3: NB-101 in-family (test split)",
        "T5": "Table 5: transfer from NB-101, SRCC",
        "T6": "Table 6: transfer from NB-101, NDCG@10",
    }
    for table in TABLES:
        trs = [r for r in rows if r["table"] == table]
        if not trs:
            continue
        out += [f"## {titles[table]}", ""]
        out += [
            "| family | setting | method | metric | ours | paper | label / reason |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in trs:
            method = r["method"] + (f" ({r['note']})" if r["note"] else "")
            why = r["reason"] or r["label"]
            out.append(
                f"| {r['family']} | {r['setting']} | {method} | {r['metric']} | "
                f"{_fmt(r['ours_mean'], r['ours_std'])} | {_fmt(r['paper_mean'], r['paper_std'])} | {why} |"
            )
        out.append("")
    return "\n".join(out)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from cgbench.predictors.base import atomic_write

    buf = io.StringIO()
    fields = list(rows[0]) if rows else ["table"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def _plot(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Ours vs paper per cell (one scatter per table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for table in TABLES:
        pts = [
            r
            for r in rows
            if r["table"] == table and r["ours_mean"] is not None and r["paper_mean"] is not None
        ]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(5, 5))
        for r in pts:
            ax.errorbar(r["paper_mean"], r["ours_mean"], yerr=r["ours_std"] or 0, fmt="o", ms=4)
            ax.annotate(
                f"{r['family']}/{r['method']}/{r['setting'][:4]}",
                (r["paper_mean"], r["ours_mean"]),
                fontsize=6,
            )
        lo = min(min(r["paper_mean"], r["ours_mean"]) for r in pts)
        hi = max(max(r["paper_mean"], r["ours_mean"]) for r in pts)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("paper")
        ax.set_ylabel("ours (cgbench reproduce)")
        ax.set_title(f"{table}: ours vs paper")
        fig.tight_layout()
        path = out / f"{table.lower()}_ours_vs_paper.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path.name)
    return written


def _plot_pred_vs_true(
    name: str, profile: Profile, device: str, cache: ModelCache, root, out: Path, families: Sequence[Target]
) -> list[str]:
    """Predicted vs true, zero-shot, seed of the first run, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = _spec(name, profile, device, cache)
    fams = [t for t in families if t.stem is not None and t.family in profile.targets]
    if not fams:
        return []
    fig, axes = plt.subplots(1, len(fams), figsize=(3.2 * len(fams), 3.2), squeeze=False)
    source = prepare_task(profile.source_task, root=root)
    model = spec.make(profile.seeds[0])
    model.fit(
        source.train.archs,
        source.train.labels,
        valid_graphs=source.valid.archs,
        valid_labels=source.valid.labels,
    )
    for ax, t in zip(axes[0], fams, strict=True):
        try:
            prep = prepare_task(profile.task(t, "zero-shot"), root=root)
        except Exception as err:  # family not built
            ax.set_title(f"{t.family}: {type(err).__name__}", fontsize=7)
            continue
        pred = model.predict(prep.scored.archs)
        ax.scatter(prep.scored.labels, pred, s=2, alpha=0.4)
        ax.set_title(t.family, fontsize=8)
        ax.set_xlabel("true")
    axes[0][0].set_ylabel(f"{name} predicted (zero-shot)")
    fig.tight_layout()
    path = out / f"pred_vs_true_{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]


# ---------------------------------------------------------------------------- entry point
def reproduce(
    tables: Sequence[str] = TABLES,
    *,
    profile: str = "quick",
    seeds: int | None = None,
    device: str = "cpu",
    out: str | Path = "reproduce",
    root: str | Path | None = None,
    predictors: Sequence[str] = LEARNED,
    source: str | None = None,
    targets: Sequence[str] | None = None,
    workers: int | None = None,
    plots: bool = True,
    echo: Callable[[str], None] = print,
    engine: str = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Run the reproduction (see the module docstring); returns the JSON written to
    ``OUT/results.json`` (``rows``: one per cell and metric).

    ``engine`` runs the ``(predictor, seed)`` training jobs and the evaluation cells: ``local``
    (``workers`` spawned processes) or ``ray`` (one Ray task each on the cluster at
    ``ray_address``; ``OUT`` and the data root must then be on storage every node sees). Trained
    models are cached by content under ``OUT/cache`` and finished cells under ``OUT/cells``, so a
    rerun after a crash redoes neither."""
    tables = [t.upper() for t in tables] or list(TABLES)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ReproduceError(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    if profile not in PROFILES:
        raise ReproduceError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    bad = [p for p in predictors if p not in LEARNED]
    if bad:
        raise ReproduceError(f"unknown learned predictor(s) {', '.join(bad)}; known: {', '.join(LEARNED)}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ReproduceError("--device cuda: no CUDA device is available here; use --device cpu")
    elif device != "cpu":
        raise ReproduceError(f"unknown device {device!r}; use cpu or cuda")
    prof = PROFILES[profile]
    if seeds is not None:
        if seeds < 1:
            raise ReproduceError("--seeds must be at least 1")
        prof = dataclasses.replace(prof, seeds=tuple(range(seeds)))
    if source is not None:
        prof = dataclasses.replace(prof, source=source)
    if targets is not None:
        known = {t.family for t in TARGETS}
        bad_t = [t for t in targets if t not in known]
        if bad_t:
            raise ReproduceError(f"unknown target(s) {', '.join(bad_t)}; known: {', '.join(sorted(known))}")
        prof = dataclasses.replace(prof, targets=tuple(targets))
    prof.source_task  # noqa: B018 - validates the source family
    n_workers = workers or (1 if device != "cpu" else min(prof.workers, os.cpu_count() or 1))
    try:  # the engine's own checks: a known name, an address only for Ray, Ray installed
        runner = get_engine(engine, workers=n_workers, address=ray_address, start_method="spawn")
    except EngineError as err:
        raise ReproduceError(str(err)) from err
    out = Path(out).resolve()  # absolute: Ray workers do not share the driver's working directory
    out.mkdir(parents=True, exist_ok=True)
    cache = ModelCache.of_run(out)  # the code digest is taken once, here
    root = str(Path(root).resolve()) if root is not None else None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()

    # 1. training (only what the tables need)
    need_train = any(t in tables for t in ("T3", "T5", "T6"))
    train_log: list[dict] = []
    train_error = None
    if need_train and predictors:
        jobs = [(p, s, prof, device, cache, root) for p in predictors for s in prof.seeds]
        where = f"{n_workers} worker(s)" if runner.name == "local" else "Ray"
        echo(f"training {len(jobs)} (predictor, seed) models on {prof.source} ({where}) ...")
        finished: dict[int, dict] = {}
        try:
            for i, r in _run_units(_train_one, jobs, runner):  # as each ends
                finished[i] = r
                status = (
                    f"FAILED: {r['error']}" if r.get("error") else ("cached" if r["cached"] else "trained")
                )
                echo(
                    f"  [{len(finished)}/{len(jobs)}] {r['predictor']} seed {r['seed']}: "
                    f"{status} in {r['seconds']:.0f} s"
                )
        except (TaskError, FileNotFoundError, ValueError) as err:
            train_error = f"{type(err).__name__}: {err}"
            echo(f"training failed: {train_error}")
        train_log = [finished[i] for i in sorted(finished)]
    # 2. evaluation
    cells = _cells(tables, prof, list(predictors))
    echo(f"evaluating {len(cells)} task(s) ...")
    done = _evaluate_cells(cells, prof, device, out, root, cache, runner, echo)
    rows = _rows(done, prof)
    meta = {
        "profile": dataclasses.asdict(prof),
        "tables": tables,
        "device": device,
        "engine": engine,
        "started": started,
        "seconds": time.perf_counter() - t0,
        "training": train_log,
        "evaluation": [
            {"task": c["task"], "cached": bool(c.get("cached")), "seconds": c.get("seconds")} for c in done
        ],
        "training_error": train_error,
        "settings": {p: dataclasses.asdict(predictor_config(p, prof, device, None)) for p in predictors},
        "notes": [
            "gennape is a re-implementation: the paper's code is unpublished (unknowns are config values)",
            "cgb-rank is cgbench's own predictor, not in the paper",
            "NB-101 labels: nasbench-vis 20k val. acc. at 108 epochs (one run) + NASLib's 500",
        ],
    }
    files = ["results.json", "results.csv", "tables.md"]
    if plots:
        try:
            files += _plot(rows, out)
            if "T5" in tables and "cgb-rank" in predictors and train_error is None:
                files += _plot_pred_vs_true("cgb-rank", prof, device, cache, root, out, TARGETS)
        except Exception as err:  # plotting must not lose the numbers
            log.warning("plots failed: %s", err)
            meta["plot_error"] = f"{type(err).__name__}: {err}"
    meta["seconds"] = time.perf_counter() - t0
    from cgbench.predictors.base import atomic_write

    result = {"format": "cgbench-reproduce/1", "meta": meta, "rows": rows, "files": files}
    atomic_write(out / "results.json", json.dumps(result, indent=1, default=str).encode())
    _write_csv(out / "results.csv", rows)
    md = render_markdown(rows, prof, meta)
    atomic_write(out / "tables.md", md.encode())
    echo(md)
    return result
