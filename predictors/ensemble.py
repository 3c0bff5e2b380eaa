"""Ensembles of learned predictors with GENNAPE's combination rules.

Zero-shot: the equal-weight mean of the members' predictions. Fine-tune: every member is
fine-tuned on the target sample and the members are weighted by ``softmax(KT / kt_temperature)``,
KT = Kendall tau of the member's predictions on the sample (before its fine-tuning by default,
``kt_stage``; after fine-tuning every member ranks its own training sample almost perfectly).
Members share the config and the target normaliser and differ by seed (``seed * 1000 + k``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from scipy.stats import kendalltau

from cgbench.predictors.base import LearnedPredictor, TrainConfig

__all__ = ["EnsembleConfig", "Ensemble"]


@dataclasses.dataclass
class EnsembleConfig(TrainConfig):
    """:class:`TrainConfig` plus the ensemble's size and fine-tune weighting."""

    n_members: int = 6
    kt_temperature: float = 1.0
    kt_stage: str = "before"  # KT of members on the fine-tune sample "before" or "after" tuning


class Ensemble(LearnedPredictor):
    """``n_members`` members of ``member_class``, combined as the module docstring says."""

    member_class: ClassVar[type[LearnedPredictor]] = LearnedPredictor
    config_class: ClassVar[type] = EnsembleConfig

    def __init__(self, seed: int = 0, config=None, **overrides) -> None:
        super().__init__(seed, config, **overrides)
        self.members: list[LearnedPredictor] = []
        self.weights = np.zeros(0)

    def _new_members(self) -> list[LearnedPredictor]:
        return [
            self.member_class(seed=self.seed * 1000 + k, config=self.config)
            for k in range(self.config.n_members)
        ]

    def _build(self) -> torch.nn.Module:
        self.members = self._new_members()
        return torch.nn.ModuleList(m._build() for m in self.members)

    def _sync(self) -> None:
        for m, module in zip(self.members, self.model, strict=True):
            m.model, m.transform = module, self.transform

    def _train(self, gb, y, valid) -> None:
        self.members = self._new_members()
        for m in self.members:
            m.transform = self.transform
            m._train(gb, y, valid)
            self.history.extend({"member": m.seed, **row} for row in m.history)
        self.model = torch.nn.ModuleList(m.model for m in self.members)
        self.weights = np.full(len(self.members), 1.0 / len(self.members))

    def _load_tensors(self, tensors, where) -> None:
        super()._load_tensors(tensors, where)
        self._sync()

    def _extra_state(self) -> dict:
        return {"weights": self.weights.tolist()}

    def _set_extra_state(self, state: dict) -> None:
        self.weights = np.asarray(state.get("weights", []), dtype=np.float64)

    def fine_tune(self, graphs, labels) -> Ensemble:
        """Fine-tune every member on the sample; weight members by softmax(KT)."""
        if self.model is None:
            return self.fit(graphs, labels)
        gb, labels = self._prepare(graphs, labels)
        cfg = self.config
        y = self._targets(gb, labels)
        kts = []
        for m in self.members:
            if cfg.kt_stage == "before":
                kts.append(_kt(m._scores(m.model, gb), labels))
            m._train_loop(
                m.model,
                gb,
                y,
                epochs=cfg.fine_tune_epochs,
                batch_size=cfg.fine_tune_batch_size,
                lr=cfg.fine_tune_lr,
                salt=2,
            )
            if cfg.kt_stage == "after":
                kts.append(_kt(m._scores(m.model, gb), labels))
        z = np.asarray(kts) / cfg.kt_temperature
        w = np.exp(z - z.max())
        self.weights = w / w.sum()
        return self

    def _scores(self, model, gb, batch: int = 1024) -> np.ndarray:
        if not self.members:
            self._sync()
        w = (
            self.weights
            if len(self.weights) == len(self.members)
            else np.full(len(self.members), 1 / len(self.members))
        )
        return sum(wk * m._scores(m.model, gb, batch) for wk, m in zip(w, self.members, strict=True))


def _kt(pred: np.ndarray, labels: np.ndarray) -> float:
    tau = kendalltau(pred, labels).statistic
    return 0.0 if not np.isfinite(tau) else float(tau)
