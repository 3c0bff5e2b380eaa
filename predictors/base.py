"""What every learned predictor shares: config, training loop, cache, save/load.

A learned predictor is a :class:`LearnedPredictor`: it implements the harness's protocol
(``fit(graphs, labels, valid_graphs=, valid_labels=)``, ``fine_tune``, ``predict``) and
``save(path)`` / ``load(path)``: ``PATH.safetensors`` holds the weights, ``PATH.json`` the class,
its config and the target normaliser. Never a pickle. Loading weights that do not match the
config raises :class:`PredictorFileError` naming the file and the first mismatching tensor.

``fit`` is cached by content: with a cache directory (``cache_dir`` config value or
``$CGBENCH_PREDICTOR_CACHE``) the key is the SHA-256 of the class, config (without device /
cache), seed, featuriser, training and validation arch ids and labels; a hit loads the saved
model instead of training, so ``cgbench reproduce`` trains each source model once and an
interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cgbench.eval.metrics import spearman
from cgbench.eval.predictor import BasePredictor, PredictorError
from cgbench.files import source_digest
from cgbench.predictors.features import GraphBatch, featurise
from cgbench.predictors.nn import to_device

__all__ = ["PredictorFileError", "TrainConfig", "LearnedPredictor", "FlopsTransform", "atomic_write"]

log = logging.getLogger(__name__)
FORMAT = "cgbench-predictor/1"


class PredictorFileError(PredictorError):
    """A saved predictor that cannot be loaded (missing file, wrong class, weights that do not
    match the config)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclasses.dataclass
class TrainConfig:
    """Training settings shared by the GNN predictors (defaults = GENNAPE's reference code)."""

    featuriser: str = "feat/gennape-1"
    conv: str = "graphconv"
    layers: int = 6
    hidden: int = 32
    activation: str = "tanh"
    dropout: float = 0.0
    bidirectional: bool = False  # False: the directed CG edges as stored (the reference)
    pooling: str = "mean"
    epochs: int = 40
    max_steps: int | None = None  # stop training after this many Adam steps (None: all epochs)
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    select: str = "srcc"  # checkpoint by best dev "srcc" (paper) or lowest dev "mape" (code)
    max_train: int | None = None  # subsample the training archs (reduced profiles)
    max_valid: int | None = 2000  # dev archs used for checkpoint selection
    target: str = "raw"  # "raw" accuracy fraction, or "flops" (GENNAPE's FLOPs transform)
    min_acc: float = 0.0  # drop training archs below this accuracy (paper: 0.8 with "flops")
    rank_loss: float = 0.0  # weight of a pairwise logistic ranking loss added to MSE
    fine_tune_epochs: int = 100
    fine_tune_batch_size: int = 1
    fine_tune_lr: float = 1e-4
    device: str = "cpu"
    threads: int | None = None  # torch threads (None: leave as is)
    cache_dir: str | None = None
    # the predictors' code digest the fit cache keys on (None: the code on disk now); a run of
    # ``reproduce`` pins it once so all its units key their models alike
    code_digest: str | None = None

    def key_dict(self) -> dict[str, Any]:
        """The settings that change a trained model (no device, threads or cache)."""
        d = dataclasses.asdict(self)
        for k in ("device", "threads", "cache_dir", "code_digest"):
            d.pop(k)
        return d


class FlopsTransform:
    """GENNAPE's FLOPs transform (AIO-P normalizers.py): ``y = (acc / (log10(GFLOPs+1)+1) - mu)
    / sigma``, inverse ``(y * sigma + mu) * (log10(GFLOPs+1)+1)``; mu, sigma from training data."""

    def __init__(self, mu: float = 0.0, sigma: float = 1.0) -> None:
        self.mu, self.sigma = mu, sigma

    @staticmethod
    def factor(flops: np.ndarray) -> np.ndarray:
        return np.log10(np.maximum(flops, 0.0) / 1e9 + 1.0) + 1.0

    def fit(self, acc: np.ndarray, flops: np.ndarray) -> FlopsTransform:
        r = acc / self.factor(flops)
        self.mu, self.sigma = float(r.mean()), float(r.std() or 1.0)
        return self

    def forward(self, acc: np.ndarray, flops: np.ndarray) -> np.ndarray:
        return (acc / self.factor(flops) - self.mu) / self.sigma

    def inverse(self, y: np.ndarray, flops: np.ndarray) -> np.ndarray:
        return (y * self.sigma + self.mu) * self.factor(flops)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _ids(graphs: Sequence) -> list[str] | None:
    ids = getattr(graphs, "arch_ids", None)
    return list(ids) if ids is not None else None


def _adam(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam over ``model``'s parameters; the fused kernel (one call per step instead of ~10 small
    ops per tensor; same update up to float rounding) where this torch build has it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused Adam for this device / dtype
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def pairwise_rank_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss over the batch's ordered pairs (ties ignored)."""
    diff_y = y[:, None] - y[None, :]
    mask = diff_y > 1e-6
    if not bool(mask.any()):
        return pred.sum() * 0
    diff_p = pred[:, None] - pred[None, :]
    return torch.nn.functional.softplus(-diff_p[mask]).mean()


class LearnedPredictor(BasePredictor):
    """Base class: subclasses define ``config_class``, ``_build()`` (the modules) and may
    override ``_train`` / ``_predict_scaled`` / ``fine_tune``."""

    requires_fit: ClassVar[bool] = True
    predicts_label: ClassVar[bool] = True
    name: ClassVar[str] = "learned"
    config_class: ClassVar[type] = TrainConfig
    paper_note: ClassVar[str] = ""

    @classmethod
    def default_config(cls) -> Any:
        """This predictor's default settings (a ``config_class`` instance)."""
        return cls.config_class()

    def __init__(self, seed: int = 0, config: Any = None, **overrides: Any) -> None:
        cfg = config if config is not None else self.default_config()
        if overrides:
            cfg = dataclasses.replace(cfg, **overrides)
        self.config = cfg
        self.seed = int(seed)
        self.transform = FlopsTransform()
        self.model: torch.nn.Module | None = None
        self.history: list[dict[str, float]] = []
        self.from_cache = False

    # ------------------------------------------------------------------ modules
    def _build(self) -> torch.nn.Module:
        raise NotImplementedError

    def _device(self) -> torch.device:
        dev = self.config.device
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise PredictorError(f"{self.name}: device {dev!r} requested but CUDA is not available")
        return torch.device(dev)

    # ------------------------------------------------------------------ targets
    def _targets(self, gb: GraphBatch, labels: np.ndarray) -> np.ndarray:
        if self.config.target == "flops":
            return self.transform.forward(labels, gb.flops)
        return labels

    def _to_label(self, gb: GraphBatch, scores: np.ndarray) -> np.ndarray:
        if self.config.target == "flops":
            return self.transform.inverse(scores, gb.flops)
        return scores

    # ------------------------------------------------------------------ training
    def _rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def _subsample(self, n: int, limit: int | None, salt: int) -> np.ndarray:
        idx = np.arange(n)
        if limit is not None and n > limit:
            idx = np.sort(self._rng(salt).choice(n, limit, replace=False))
        return idx

    def _forward(
        self, model: torch.nn.Module, gb: GraphBatch, classes: np.ndarray | None = None
    ) -> torch.Tensor:
        return model(to_device(gb, self._device(), classes))

    @staticmethod
    def _classes(model: torch.nn.Module, gb: GraphBatch) -> np.ndarray | None:
        """Node classes of ``gb`` when ``model`` may run on class-compressed batches (same
        scores and gradients, each repeated node computed once; see ``to_device``), else None."""
        class_layers = getattr(model, "class_layers", None)
        layers = class_layers() if class_layers is not None else None
        return None if layers is None else gb.classes(layers)

    def _scores(self, model: torch.nn.Module, gb: GraphBatch, batch: int = 1024) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            classes = self._classes(model, gb)  # kept with gb: later predictors reuse them
            # compressed collated batches (small, no weights in them) are kept with gb too:
            # scoring the same graphs with another model (members, seeds) skips collation
            device = self._device()
            kept = (
                {}
                if classes is None
                else gb.memo.setdefault(("tensors", batch, str(device), len(classes)), {})
            )
            for s in range(0, len(gb), batch):
                t = kept.get(s)
                if t is None:
                    idx = np.arange(s, min(s + batch, len(gb)))
                    cls = classes[:, gb.node_rows(idx)] if classes is not None else None
                    t = to_device(gb.select(idx), device, cls)
                    if classes is not None:
                        kept[s] = t
                out.append(model(t).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def _dev_score(self, model, gb: GraphBatch, labels: np.ndarray) -> float:
        pred = self._to_label(gb, self._scores(model, gb))
        if self.config.select == "mape":
            return -float(np.mean(np.abs(pred - labels) / np.maximum(np.abs(labels), 1e-8)))
        return float(spearman(labels, pred)) if np.ptp(pred) > 0 else -1.0

    def _train_loop(
        self,
        model: torch.nn.Module,
        gb: GraphBatch,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        valid: tuple[GraphBatch, np.ndarray] | None = None,
        salt: int = 1,
        max_steps: int | None = None,
    ) -> torch.nn.Module:
        """MSE (+ optional ranking loss) with Adam and grad clipping; keeps the best dev epoch
        when ``valid`` is given, else the last. ``max_steps`` ends training after that many Adam
        steps, mid-epoch if need be (that partial epoch is scored like a whole one)."""
        cfg = self.config
        device = self._device()
        opt = _adam(model, lr, cfg.weight_decay)
        params = [p for p in model.parameters() if p.requires_grad]
        rng = self._rng(salt)
        yt = torch.as_tensor(y, dtype=torch.float32, device=device)
        best, best_state = -math.inf, None
        model.train()
        # node classes once, reused by every epoch's batches; for tiny batches (fine-tuning with
        # batch 1) the compressed batch's set-up costs more than it saves
        classes = self._classes(model, gb) if batch_size >= 8 else None
        steps = 0
        for epoch in range(epochs):
            if max_steps is not None and steps >= max_steps:
                break
            model.train()
            t0, total = time.perf_counter(), torch.zeros((), device=device)
            perm = rng.permutation(len(gb))
            seen = epoch_steps = 0
            for s in range(0, len(perm), batch_size):
                if max_steps is not None and steps >= max_steps:
                    break
                idx = perm[s : s + batch_size]
                cls = classes[:, gb.node_rows(idx)] if classes is not None else None
                pred = self._forward(model, gb.select(idx), cls)
                target = yt[torch.as_tensor(idx, device=device)]
                loss = torch.nn.functional.mse_loss(pred, target)
                if cfg.rank_loss > 0 and len(idx) > 1:
                    loss = loss + cfg.rank_loss * pairwise_rank_loss(pred, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                opt.step()
                steps += 1
                epoch_steps += 1
                seen += len(idx)
                total += loss.detach() * len(idx)  # no per-step sync with the device
            loss = float(total) / max(seen, 1)
            row = {"epoch": epoch, "loss": loss, "steps": epoch_steps, "seconds": time.perf_counter() - t0}
            if valid is not None:
                row["dev"] = self._dev_score(model, *valid)
                if row["dev"] > best:
                    best = row["dev"]
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.history.append(row)
        if best_state is not None:
            model.load_state_dict(best_state)
        return model

    def _check_labels(self, graphs, labels) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.float64)
        if len(graphs) != len(labels):
            raise PredictorError(f"{self.name}: {len(graphs)} graphs but {len(labels)} labels")
        if len(labels) == 0:
            raise PredictorError(f"{self.name}: fit needs labelled architectures; got none")
        if not np.all(np.isfinite(labels)):
            raise PredictorError(f"{self.name}: {int((~np.isfinite(labels)).sum())} labels are NaN/inf")
        return labels

    def _prepare(self, graphs, labels) -> tuple[GraphBatch, np.ndarray]:
        labels = self._check_labels(graphs, labels)
        return featurise(graphs, self.config.featuriser), labels

    def _train(self, gb: GraphBatch, y: np.ndarray, valid: tuple[GraphBatch, np.ndarray] | None) -> None:
        """Build ``self.model`` and train it on (transformed) targets ``y``."""
        torch.manual_seed(self.seed)
        self.model = self._build().to(self._device())
        self._train_as_configured(self.model, gb, y, valid)

    def _train_as_configured(
        self,
        model: torch.nn.Module,
        gb: GraphBatch,
        y: np.ndarray,
        valid: tuple[GraphBatch, np.ndarray] | None,
    ) -> torch.nn.Module:
        """``_train_loop`` with the config's training length, batch size and learning rate."""
        cfg = self.config
        return self._train_loop(
            model,
            gb,
            y,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            valid=valid,
            max_steps=cfg.max_steps,
        )

    # ------------------------------------------------------------------ protocol
    def fit(self, graphs, labels, valid_graphs=None, valid_labels=None) -> LearnedPredictor:
        """Train on ``graphs``/``labels`` (accuracy fractions); the dev set picks the checkpoint."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.max_steps is not None and cfg.max_steps < 1:
            raise PredictorError(
                f"{self.name}: max_steps={cfg.max_steps}; give a step count >= 1, or None for every epoch"
            )
        labels = self._check_labels(graphs, labels)
        keep = np.flatnonzero(labels >= cfg.min_acc)
        if len(keep) == 0:
            raise PredictorError(f"{self.name}: no training arch reaches min_acc={cfg.min_acc}")
        keep = keep[self._subsample(len(keep), cfg.max_train, 11)]
        vidx = vid = None
        has_valid = valid_graphs is not None and valid_labels is not None and len(valid_labels) > 0
        if has_valid:
            valid_labels = self._check_labels(valid_graphs, valid_labels)
            vidx = self._subsample(len(valid_labels), cfg.max_valid, 12)
            ids = _ids(valid_graphs)
            vid = [ids[i] for i in vidx] if ids is not None else None
        cache = self._cache_path(graphs, labels, keep, vid, None if vidx is None else valid_labels[vidx])
        if cache is not None and cache.with_suffix(".json").is_file():
            try:
                self._load_into(cache)
                self.from_cache = True
                return self
            except PredictorFileError as err:
                log.warning("ignoring unreadable cache entry %s: %s", cache, err)
        gb = featurise(
            graphs[keep] if hasattr(graphs, "row_indices") else [graphs[i] for i in keep], cfg.featuriser
        )
        valid = None
        if has_valid:
            vsel = (
                valid_graphs[vidx]
                if hasattr(valid_graphs, "row_indices")
                else [valid_graphs[i] for i in vidx]
            )
            valid = (featurise(vsel, cfg.featuriser), valid_labels[vidx])
        sub, y_raw = gb, labels[keep]
        if cfg.target == "flops":
            self.transform.fit(y_raw, sub.flops)
        self._train(sub, self._targets(sub, y_raw), valid)
        if cache is not None:
            self.save(cache)
        return self

    def _cache_path(self, graphs, labels, keep, vid, vlabels) -> Path | None:
        root = self.config.cache_dir or os.environ.get("CGBENCH_PREDICTOR_CACHE")
        ids = _ids(graphs)
        if not root or ids is None:
            return None
        key = _digest(
            FORMAT,
            self.config.code_digest or source_digest("cgbench.predictors"),  # a code fix retrains
            type(self).__name__,
            self.config.key_dict(),
            self.seed,
            [ids[i] for i in keep],
            labels[keep],
            vid,
            vlabels if vlabels is not None else [],
        )
        return Path(root) / f"{self.name.replace('/', '_')}-{key[:24]}"

    def fine_tune(self, graphs, labels) -> LearnedPredictor:
        """Continue training on the target sample: fresh Adam, ``fine_tune_batch_size`` (1 as the
        reference), ``fine_tune_epochs``, last epoch kept. Without ``fit`` first: fit on it."""
        if self.model is None:
            return self.fit(graphs, labels)
        gb, labels = self._prepare(graphs, labels)
        cfg = self.config
        self._train_loop(
            self.model,
            gb,
            self._targets(gb, labels),
            epochs=cfg.fine_tune_epochs,
            batch_size=cfg.fine_tune_batch_size,
            lr=cfg.fine_tune_lr,
            salt=2,
        )
        return self

    def predict(self, graphs) -> np.ndarray:
        """Predicted accuracy (fraction) per architecture."""
        if self.model is None:
            raise PredictorError(f"{self.name}: predict before fit (or load)")
        gb = featurise(graphs, self.config.featuriser)
        return self._to_label(gb, self._scores(self.model, gb))

    # ------------------------------------------------------------------ persistence
    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _tensors(self) -> dict[str, torch.Tensor]:
        assert self.model is not None
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def _load_tensors(self, tensors: dict[str, torch.Tensor], where: Path) -> None:
        try:
            self.model = self._build()
        except (ValueError, KeyError, TypeError) as err:
            raise PredictorFileError(f"predictor file {where}: its config builds no model ({err})") from None
        _check_state(self.model.state_dict(), tensors, where)
        self.model.load_state_dict(tensors)
        self.model.to(self._device())

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.safetensors`` (weights) and ``PATH.json`` (class, config, normaliser)."""
        from safetensors.torch import save as st_save

        if self.model is None:
            raise PredictorError(f"{self.name}: nothing to save (fit or load first)")
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        meta = {
            "format": FORMAT,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "name": self.name,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "transform": {"mu": self.transform.mu, "sigma": self.transform.sigma},
            "extra": self._extra_state(),
            "history": self.history,
        }
        atomic_write(base.with_suffix(".safetensors"), st_save(self._tensors()))
        atomic_write(base.with_suffix(".json"), json.dumps(meta, indent=1).encode())
        return base

    def _load_into(self, base: Path) -> None:
        from safetensors.torch import load_file

        js, st = base.with_suffix(".json"), base.with_suffix(".safetensors")
        if not js.is_file() or not st.is_file():
            raise PredictorFileError(f"predictor file {base}: needs both {js.name} and {st.name}")
        try:
            meta = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise PredictorFileError(f"predictor file {js}: not JSON ({err})") from None
        if meta.get("format") != FORMAT:
            raise PredictorFileError(f"predictor file {js}: format {meta.get('format')!r}, expected {FORMAT}")
        fields = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(meta.get("config", {})) - fields)
        if unknown:
            raise PredictorFileError(f"predictor file {js}: unknown config key(s) {', '.join(unknown)}")
        device = self.config.device
        config = dict(meta["config"])
        config.setdefault("max_steps", None)  # files older than the cap trained every epoch
        self.config = self.config_class(**{**config, "device": device})
        self.seed = int(meta.get("seed", self.seed))
        self.transform = FlopsTransform(**meta.get("transform", {}))
        self.history = list(meta.get("history", []))
        self._set_extra_state(meta.get("extra", {}))
        try:
            tensors = load_file(str(st))
        except Exception as err:  # safetensors raises its own error types
            raise PredictorFileError(f"predictor file {st}: unreadable weights ({err})") from None
        self._load_tensors(tensors, st)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> LearnedPredictor:
        """A predictor saved by :meth:`save` (``PATH``, ``PATH.json`` or ``PATH.safetensors``)."""
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        js = base.with_suffix(".json")
        if js.is_file():
            try:
                name = json.loads(js.read_text()).get("class", "")
            except (json.JSONDecodeError, UnicodeDecodeError):
                name = ""
            expected = f"{cls.__module__}:{cls.__qualname__}"
            if name and cls is not LearnedPredictor and name != expected:
                raise PredictorFileError(f"predictor file {js}: holds {name}, not {expected}")
        obj = cls(config=cls.config_class(device=device))
        obj._load_into(base)
        return obj


def _check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], where: Path) -> None:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise PredictorFileError(
            f"predictor file {where}: weights do not match the config: missing "
            f"{missing[:3] or 'none'}, unexpected {extra[:3] or 'none'}"
        )
    for k, v in expected.items():
        if tuple(v.shape) != tuple(got[k].shape):
            raise PredictorFileError(
                f"predictor file {where}: weights do not match the config: tensor {k!r} has shape "
                f"{tuple(got[k].shape)}, the config builds {tuple(v.shape)}"
            )
