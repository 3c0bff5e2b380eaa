"""Zero-cost proxies computed by cgbench on any family's networks (NASLib's definitions).

Stage order: loaders -> cg -> benchmarks -> eval -> zerocost. This package may import the earlier
stages, never ``predictors`` or ``leaderboard``.
"""

from cgbench.zerocost.data import Batch, BatchError, load_batch, synthetic_batch
from cgbench.zerocost.proxies import PROXIES, Proxy, ProxyError, compute_proxy, get_proxy, parse_proxies

__all__ = [
    "Batch", "BatchError", "load_batch", "synthetic_batch",
    "PROXIES", "Proxy", "ProxyError", "compute_proxy", "get_proxy", "parse_proxies",
]  # fmt: skip
