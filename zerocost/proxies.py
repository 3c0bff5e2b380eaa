"""Zero-cost proxies, following NASLib's definitions (``naslib/predictors/utils/pruners``).

Every proxy takes a freshly built network (its own weights, never shared sub-modules) and a
:class:`~cgbench.zerocost.data.Batch`, and returns one float, post-processed as NASLib's
``ZeroCost.query`` does: NaN/inf become ``-1e8``, and ``synflow`` is reported as its log.

"Layers" are the weights of every ``nn.Conv2d`` and ``nn.Linear`` (NASLib's
``get_layer_metric_array``); per-weight scores are summed over all elements. BatchNorm runs in
training mode (batch statistics), as in NASLib's runs, except where a proxy says otherwise.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cgbench.zerocost.data import Batch

__all__ = ["Proxy", "PROXIES", "ProxyError", "compute_proxy", "get_proxy", "parse_proxies"]

Need = Literal["none", "synthetic", "real"]


class ProxyError(ValueError):
    """An unknown proxy, or a proxy that cannot run on the given data / network."""


@dataclass(frozen=True)
class Proxy:
    """One zero-cost proxy.

    ``data`` says what input it needs: ``"none"`` (data-free: only the input shape),
    ``"synthetic"`` (an image batch; a seeded synthetic one is allowed and the result is flagged
    ``synthetic``) or ``"real"`` (a user-supplied image batch, ``--data-batch FILE.npz``; a
    synthetic batch is refused unless explicitly allowed). ``labels``: it uses class labels (CE).
    """

    name: str
    fn: Callable[[nn.Module, Batch], float]
    data: Need
    labels: bool
    summary: str


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _sum_layers(net: nn.Module, score: Callable[[nn.Module], torch.Tensor]) -> float:
    """Σ of ``score(layer)`` over the layers that received a gradient."""
    with torch.no_grad():
        return float(sum(float(score(m)) for m in _layers(net) if m.weight.grad is not None))


def _ce_loss(net: nn.Module, batch: Batch) -> torch.Tensor:
    out = net(batch.x)
    return F.cross_entropy(out, batch.labels_for(out.shape[1]))


# ---------------------------------------------------------------------------- data-free
def synflow(net: nn.Module, batch: Batch) -> float:
    """Σ|w ⊙ ∂R/∂w| with R = Σ f(1) of the network with |weights|, BatchNorm removed, float64
    (NASLib ``synflow``, ``bn=False``), then NASLib's log."""
    net = copy.deepcopy(net).double()
    _strip_batchnorm(net)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    x = torch.ones((1, *batch.x.shape[1:]), dtype=torch.float64)
    net(x).sum().backward()
    return _sum_layers(net, lambda m: (m.weight * m.weight.grad).abs().sum())


def _strip_batchnorm(net: nn.Module) -> None:
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _strip_batchnorm(child)


def zen(net: nn.Module, batch: Batch, mixup_gamma: float = 1e-2) -> float:
    """Zen-score (NASLib ``zen``): weights re-drawn from N(0, 1), BN affine reset, training mode;
    log of mean_n Σ|f(x) − f(x + γε)| of the features entering the global average pool, plus
    Σ over BN layers of log √mean(running_var). Inputs are Gaussian (seeded by ``batch``)."""
    net = copy.deepcopy(net).train()
    gen = torch.Generator().manual_seed(batch.seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
        pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        if not pools:
            raise ProxyError(
                "zen needs the network's global average pool (an nn.AdaptiveAvgPool2d); none found"
            )
        captured: list[torch.Tensor] = []
        handle = pools[-1].register_forward_pre_hook(lambda _m, inp: captured.append(inp[0]))
        try:
            x = torch.randn(batch.x.shape, generator=gen)
            x2 = torch.randn(batch.x.shape, generator=gen)
            net(x)
            net(x + mixup_gamma * x2)
        finally:
            handle.remove()
        a, b = captured[-2], captured[-1]
        score = torch.mean(torch.sum(torch.abs(a - b), dim=list(range(1, a.dim()))))
        log_bn = 0.0
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                log_bn += float(torch.log(torch.sqrt(torch.mean(m.running_var))))
        return float(torch.log(score)) + log_bn


# ---------------------------------------------------------------------------- gradient based
def snip(net: nn.Module, batch: Batch) -> float:
    """Σ|∂L/∂m| for a weight mask m = 1 (NASLib ``snip``), which equals Σ|w ⊙ ∂L/∂w|;
    CE loss on the batch, training mode."""
    net = copy.deepcopy(net).train()
    net.zero_grad()
    _ce_loss(net, batch).backward()
    return _sum_layers(net, lambda m: (m.weight * m.weight.grad).abs().sum())


def grad_norm(net: nn.Module, batch: Batch) -> float:
    """Σ over layers of ‖∂L/∂W‖_F (NASLib ``grad_norm``); CE loss, training mode."""
    net = copy.deepcopy(net).train()
    net.zero_grad()
    _ce_loss(net, batch).backward()
    return _sum_layers(net, lambda m: m.weight.grad.norm())


def fisher(net: nn.Module, batch: Batch) -> float:
    """NASLib ``fisher``: per output channel k of each layer, ½·mean_n(Σ_hw a·∂L/∂a)², summed
    over the layer's calls, broadcast over the channel's C_in·k·k weights and summed."""
    net = copy.deepcopy(net).train()
    per_layer: dict[nn.Module, torch.Tensor] = {}

    def hook(module: nn.Module, _inp, out: torch.Tensor) -> None:
        act = out.detach()

        def on_grad(grad: torch.Tensor) -> None:
            g = (act * grad).sum(dim=list(range(2, act.dim()))) if act.dim() > 2 else act * grad
            del_k = g.pow(2).mean(0).mul(0.5)
            per_layer[module] = per_layer[module] + del_k if module in per_layer else del_k

        if out.requires_grad:
            out.register_hook(on_grad)

    handles = [m.register_forward_hook(hook) for m in _layers(net)]
    try:
        net.zero_grad()
        _ce_loss(net, batch).backward()
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for m in _layers(net):
        if m in per_layer:
            total += float(per_layer[m].abs().sum()) * math.prod(m.weight.shape[1:])
    return total


# ---------------------------------------------------------------------------- activation based
def jacov(net: nn.Module, batch: Batch) -> float:
    """NASLib ``jacov``: J = ∂Σ f(x)/∂x per sample; eigenvalues λ of corrcoef(J) (N×N);
    −Σ[log(λ + 1e-5) + 1/(λ + 1e-5)]. Training mode."""
    net = copy.deepcopy(net).train()
    x = batch.x.clone().requires_grad_(True)
    y = net(x)
    y.backward(torch.ones_like(y))
    jac = x.grad.detach().reshape(x.shape[0], -1).numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        corrs = np.corrcoef(jac)
        if not np.isfinite(corrs).all():
            return math.nan
        v = np.real(np.linalg.eig(corrs)[0])
        k = 1e-5
        return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def nwot(net: nn.Module, batch: Batch) -> float:
    """NASLib ``nwot`` (NASWOT v2): K = Σ over ReLU inputs of c·cᵀ + (1−c)(1−c)ᵀ with c the
    binary code (input > 0) per sample; log|det K|. Training mode."""
    net = copy.deepcopy(net).train()
    n = batch.x.shape[0]
    kernel = np.zeros((n, n))

    def hook(_m, inp, _out) -> None:
        nonlocal kernel
        c = (inp[0].detach().reshape(n, -1) > 0).to(torch.float64)
        kernel = kernel + (c @ c.t()).numpy() + ((1.0 - c) @ (1.0 - c).t()).numpy()

    relus = [m for m in net.modules() if "ReLU" in type(m).__name__]
    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        with torch.no_grad():
            net(batch.x.clone())
    finally:
        for h in handles:
            h.remove()
    return float(np.linalg.slogdet(kernel)[1])


PROXIES: dict[str, Proxy] = {
    p.name: p
    for p in (
        Proxy(
            "synflow", synflow, "none", False, "synaptic flow of |weights| on an all-ones input, float64, log"
        ),
        Proxy("zen", zen, "none", False, "Zen-score: feature change under input mixup, Gaussian weights"),
        Proxy("snip", snip, "synthetic", True, "Σ|w·∂L/∂w| (connection sensitivity)"),
        Proxy("grad_norm", grad_norm, "synthetic", True, "Σ over layers of ‖∂L/∂W‖"),
        Proxy("nwot", nwot, "synthetic", False, "log|det| of the ReLU-code Hamming kernel"),
        Proxy("jacov", jacov, "real", False, "input-Jacobian correlation score"),
        Proxy("fisher", fisher, "real", True, "channel Fisher information of activations"),
    )
}


def get_proxy(name: str) -> Proxy:
    """The proxy called ``name``; an unknown name raises :class:`ProxyError` listing the known ones."""
    try:
        return PROXIES[name]
    except KeyError:
        raise ProxyError(f"unknown proxy {name!r}; known proxies: {', '.join(PROXIES)}") from None


def parse_proxies(text: str | list[str]) -> list[Proxy]:
    """``"synflow,snip"`` (or a list of names) -> proxies, in order, without duplicates."""
    names = text.split(",") if isinstance(text, str) else [n for t in text for n in t.split(",")]
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ProxyError(f"no proxy named; known proxies: {', '.join(PROXIES)}")
    return [get_proxy(n) for n in dict.fromkeys(names)]


def naslib_postprocess(name: str, score: float) -> float:
    """NASLib ``ZeroCost.query``: NaN/inf -> -1e8; synflow -> sign-preserving log."""
    if math.isnan(score) or math.isinf(score):
        score = -1e8
    if name == "synflow" and score != 0.0:
        score = math.log(score) if score > 0 else -math.log(-score)
    return score


def compute_proxy(name: str, net: nn.Module, batch: Batch) -> float:
    """Proxy ``name`` of ``net`` on ``batch`` (``net`` is left unchanged), NASLib-post-processed."""
    proxy = get_proxy(name)
    with torch.enable_grad():
        return naslib_postprocess(name, proxy.fn(net, batch))
