"""The Ray engine: the units of a job as Ray tasks on a (multi-node) Ray cluster.

The only module of cgbench that imports Ray (the optional extra ``cgbench[ray]``); it is loaded
by :func:`cgbench.benchmarks.engines.get_engine` when ``--engine ray`` is asked for. See
:mod:`cgbench.benchmarks.engines` for the contract and ``docs/ray.md`` for running a cluster.

Each unit is one task (``num_cpus=1``) retried up to ``max_retries`` times when its worker
process or node dies (Ray's own task retries; an exception raised by the unit is not retried).
Every node must import the same cgbench (install it on each node, or use a Ray ``runtime_env``)
and see the same store path (shared storage), because the units write their outputs themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from cgbench.benchmarks.engines import EngineError, Job


def _call(init: Callable[[], None] | None, fn: Callable[..., Any], args: tuple) -> Any:
    if init is not None:
        init()
    return fn(*args)


class RayEngine:
    """Run units as Ray tasks on the cluster at ``address`` (see :func:`get_engine`)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 3,
        in_flight_per_cpu: int = 2,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.in_flight_per_cpu = in_flight_per_cpu
        self._started = False
        self._cpus = 1

    @property
    def max_in_flight(self) -> int:
        return max(2, self.in_flight_per_cpu * self._cpus)

    def __enter__(self) -> RayEngine:
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
            if address is None:  # a one-machine Ray just for this job
                kwargs.update(num_cpus=self.num_cpus, include_dashboard=False)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise EngineError(
                    f"cannot join the Ray cluster at {address!r}: {err}; start one with "
                    "`ray start --head` (see docs/ray.md) or pass --ray-address HOST:PORT"
                ) from err
            self._started = True
        self._cpus = int(ray.cluster_resources().get("CPU", 1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            ray.shutdown()
            self._started = False

    def map_unordered(
        self,
        fn: Callable[..., Any],
        jobs: Iterable[Job],
        *,
        init: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        if not ray.is_initialized():
            raise EngineError("RayEngine.map_unordered runs inside `with engine:`")
        task = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(_call)
        pending: dict[ray.ObjectRef, Any] = {}
        try:
            for key, args in jobs:
                pending[task.remote(init, fn, args)] = key
                while len(pending) >= self.max_in_flight:
                    yield from self._collect(pending)
            while pending:
                yield from self._collect(pending)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _collect(self, pending: dict[ray.ObjectRef, Any]) -> Iterator[tuple[Any, Any]]:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            key = pending.pop(ref)
            try:
                result = ray.get(ref)
            except RayTaskError as err:  # the unit raised: re-raise it as itself
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, Exception) else err.as_instanceof_cause()) from None
            except RayError as err:  # worker/node lost more often than max_retries
                raise EngineError(
                    f"Ray lost unit {key!r} after {self.max_retries} retries: {type(err).__name__}: "
                    f"{err}; rerun the command: finished units are kept and skipped"
                ) from err
            yield key, result
