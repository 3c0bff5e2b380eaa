"""GENNAPE (Mills et al., AAAI-23), a re-implementation: the paper's code is unpublished.

What the paper says and this module does (PAPER.md, PREDICTORS.md §1.3):

1. **Contrastive pre-training** of the k-GNN encoder (GENNAPE's embedding, 6 GraphConv, tanh,
   mean pooling), SimCLR-style: two views of each graph by dropout on the node embeddings, a
   projection MLP, cosine similarities over temperature ``temperature``; the positive target of
   graph ``i`` is not only its own other view but every graph ``j`` of the batch, weighted by
   ``softmax_j(-||lambda_i - lambda_j|| / spectrum_temperature)`` over the ``q`` = 21 smallest
   Laplacian eigenvalues (cached per graph, :mod:`cgbench.predictors.spectra`).
2. **Fuzzy c-means** over the training embeddings (``n_clusters`` centres, fuzzifier ``fcm_m``,
   stop when memberships change <= ``fcm_tol``); prediction ``sum_k U_ik head_k(z_i)`` with
   ``U_ik = 1 / sum_j (d_ik / d_ij)^(2/(m-1))``, one 4-Linear head per cluster.
3. **FLOPs transform** of the target (``target="flops"``; archs below ``min_acc`` = 0.8 dropped).
4. **Ensemble**: zero-shot = equal-weight mean of ``n_members`` = 6 predictors; fine-tune =
   ``softmax(KT)`` weights on the 50 archs (:mod:`cgbench.predictors.ensemble`).

Every unknown is a named :class:`GennapeConfig` value; the defaults are our choices, reported
beside every number ("re-implementation"): ``temperature`` 0.1, ``spectrum_temperature`` 0.1,
``laplacian`` "sym" (normalised, of the undirected CG), zero padding below q nodes,
``n_clusters`` 4, ``fcm_m`` 2, heads trained jointly with the encoder after pre-training
(``freeze_encoder`` False), the 6 members = 6 seeds of the CL+FCM+T model, KT measured before
fine-tuning.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from torch import nn

from cgbench.predictors.base import LearnedPredictor
from cgbench.predictors.ensemble import Ensemble, EnsembleConfig
from cgbench.predictors.features import GraphBatch
from cgbench.predictors.nn import Head, Regressor, to_device
from cgbench.predictors.spectra import laplacian_spectra

__all__ = ["GennapeConfig", "GennapeMember", "Gennape", "FCMRegressor", "fuzzy_cmeans", "memberships"]

NOTE = "re-implementation; the paper's code is unpublished (unknowns are named config values)"


@dataclasses.dataclass
class GennapeConfig(EnsembleConfig):
    """GENNAPE's settings; see the module docstring for which are the paper's and which ours."""

    target: str = "flops"
    min_acc: float = 0.8
    cl_epochs: int = 40
    cl_batch_size: int = 64
    cl_lr: float = 1e-3
    temperature: float = 0.1
    spectrum_temperature: float = 0.1
    q: int = 21
    laplacian: str = "sym"
    view_dropout: float = 0.1
    n_clusters: int = 4
    fcm_m: float = 2.0
    fcm_tol: float = 1e-9
    fcm_max_iter: int = 300
    freeze_encoder: bool = False


def memberships(z: torch.Tensor, centres: torch.Tensor, m: float) -> torch.Tensor:
    """FCM memberships ``U_ik = 1 / sum_j (d_ik/d_ij)^(2/(m-1))`` (rows sum to 1)."""
    d = torch.cdist(z, centres).clamp_min(1e-12)
    inv = d.pow(-2.0 / (m - 1.0))
    return inv / inv.sum(dim=1, keepdim=True)


def fuzzy_cmeans(
    z: np.ndarray, k: int, m: float = 2.0, tol: float = 1e-9, max_iter: int = 300, seed: int = 0
) -> np.ndarray:
    """Fuzzy c-means centres (k, d) of ``z``; stops when memberships move <= ``tol``."""
    rng = np.random.default_rng(seed)
    u = rng.random((len(z), k))
    u /= u.sum(1, keepdims=True)
    zt = torch.as_tensor(z, dtype=torch.float64)
    centres = None
    for _ in range(max_iter):
        um = u**m
        centres = (um.T @ z) / np.maximum(um.sum(0)[:, None], 1e-12)
        new = memberships(zt, torch.as_tensor(centres), m).numpy()
        done = np.abs(new - u).max() <= tol
        u = new
        if done:
            break
    return centres


class FCMRegressor(nn.Module):
    """Encoder (:class:`Regressor` minus its head), a projection for pre-training, and
    ``n_clusters`` heads mixed by FCM memberships around fixed ``centres``."""

    def __init__(self, cfg: GennapeConfig) -> None:
        super().__init__()
        self.m = cfg.fcm_m
        self.base = Regressor(cfg.featuriser, cfg.conv, cfg.layers, cfg.hidden, cfg.activation, cfg.dropout)
        del self.base.head
        self.proj = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden)
        )
        self.heads = nn.ModuleList(Head(cfg.hidden, cfg.hidden) for _ in range(cfg.n_clusters))
        self.register_buffer("centres", torch.zeros(cfg.n_clusters, cfg.hidden))

    def embed_graphs(self, t, node_dropout: float = 0.0) -> torch.Tensor:
        return self.base.embed_graphs(t, node_dropout)

    def class_layers(self) -> int | None:
        """As :meth:`Regressor.class_layers` (class-compressed batches outside pre-training)."""
        return self.base.class_layers()

    def forward(self, t) -> torch.Tensor:
        z = self.embed_graphs(t)
        u = memberships(z, self.centres, self.m)
        out = torch.cat([h(z) for h in self.heads], dim=1)
        return (u * out).sum(dim=1)


def spectral_contrastive_loss(
    p1: torch.Tensor, p2: torch.Tensor, spectra: torch.Tensor, tau: float, tau_s: float
) -> torch.Tensor:
    """Soft-target NT-Xent: view-1 graph ``i`` against every view-2 graph ``j``, target
    ``softmax_j(-||lambda_i - lambda_j|| / tau_s)`` (its own view has distance 0), symmetrised."""
    p1 = nn.functional.normalize(p1, dim=1)
    p2 = nn.functional.normalize(p2, dim=1)
    target = torch.softmax(-torch.cdist(spectra, spectra) / tau_s, dim=1)
    logits = p1 @ p2.T / tau
    forward = -(target * torch.log_softmax(logits, dim=1)).sum(1).mean()
    backward = -(target * torch.log_softmax(logits.T, dim=1)).sum(1).mean()  # distances are symmetric
    return 0.5 * (forward + backward)


class GennapeMember(LearnedPredictor):
    """One CL + FCM + heads predictor (a member of :class:`Gennape`)."""

    name = "gennape-member"
    config_class = GennapeConfig

    def _build(self) -> nn.Module:
        return FCMRegressor(self.config)

    def _pretrain(self, model: FCMRegressor, gb: GraphBatch) -> None:
        cfg = self.config
        cache = cfg.cache_dir
        spectra = torch.as_tensor(
            laplacian_spectra(gb, cfg.q, cfg.laplacian, cache), dtype=torch.float32, device=self._device()
        )
        opt = torch.optim.Adam(list(model.base.parameters()) + list(model.proj.parameters()), lr=cfg.cl_lr)
        rng = self._rng(3)
        for epoch in range(cfg.cl_epochs):
            model.train()
            t0, total = time.perf_counter(), 0.0
            perm = rng.permutation(len(gb))
            for s in range(0, len(perm), cfg.cl_batch_size):
                idx = perm[s : s + cfg.cl_batch_size]
                if len(idx) < 2:
                    continue
                t = to_device(gb.select(idx), self._device())
                p1 = model.proj(model.embed_graphs(t, cfg.view_dropout))
                p2 = model.proj(model.embed_graphs(t, cfg.view_dropout))
                sel = spectra[torch.as_tensor(idx, device=spectra.device)]
                loss = spectral_contrastive_loss(p1, p2, sel, cfg.temperature, cfg.spectrum_temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.history.append(
                {"cl_epoch": epoch, "cl_loss": total / len(perm), "seconds": time.perf_counter() - t0}
            )

    def _embeddings(self, model: FCMRegressor, gb: GraphBatch) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(gb), 1024):
                t = to_device(gb.select(np.arange(s, min(s + 1024, len(gb)))), self._device())
                out.append(model.embed_graphs(t).double().cpu().numpy())
        return np.concatenate(out)

    def _train(self, gb, y, valid) -> None:
        cfg = self.config
        torch.manual_seed(self.seed)
        model = self.model = self._build().to(self._device())
        if cfg.cl_epochs > 0:
            self._pretrain(model, gb)
        z = self._embeddings(model, gb)
        centres = fuzzy_cmeans(z, cfg.n_clusters, cfg.fcm_m, cfg.fcm_tol, cfg.fcm_max_iter, self.seed)
        model.centres.copy_(torch.as_tensor(centres, dtype=torch.float32))
        if cfg.freeze_encoder:
            for p in model.base.parameters():
                p.requires_grad_(False)
        self._train_as_configured(model, gb, y, valid)
        for p in model.parameters():
            p.requires_grad_(True)


class Gennape(Ensemble):
    """GENNAPE re-implementation: an ensemble of :class:`GennapeMember` (see module docstring)."""

    name = "gennape"
    member_class = GennapeMember
    config_class = GennapeConfig
    paper_note = NOTE
