"""Execution engines: where the independent units of a long job run.

A job that splits into independent units (build chunks, proxy batches, and the
``(predictor, seed)`` training jobs and evaluation cells of ``cgbench reproduce``) hands them to an
:class:`Engine` and gets the results back as each unit finishes::

    engine = get_engine("local", workers=4)          # or get_engine("ray", address="HOST:6379")
    with engine:
        for key, result in engine.map_unordered(fn, ((key, args) for ...), init=setup):
            save(key, result)                         # the caller owns all writes

The contract every engine keeps:

* ``fn`` and ``init`` are module-level (importable, picklable) functions; ``args`` are picklable.
  ``init()`` runs in the worker before ``fn(*args)`` (at least once per worker process).
* ``jobs`` is consumed lazily: at most :attr:`Engine.max_in_flight` units are submitted and not
  yet yielded, so the caller's memory stays bounded however long the job list is.
* Results come back in completion order as ``(key, result)``; the caller orders them (by key).
* A unit is *idempotent*: it may run more than once (a lost worker's unit is retried), so it
  must write its output atomically under a name fixed by its key, never append.
* The first unit that fails raises its exception in the caller (a cgbench error keeps its type
  and message); the units still in flight are cancelled. Nothing is left running after the
  ``with`` block ends, and units that finished before a crash stay finished: callers skip them on
  the next run through their own resume keys (e.g. the shard names of a build).

:class:`LocalEngine` (the default) is a fork process pool on this machine; ``"ray"`` is
:class:`cgbench.benchmarks.engine_ray.RayEngine`, imported only when asked for, so nothing but
that module imports Ray (``pip install "cgbench[ray]"``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
Job = tuple[Any, tuple]

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = 'pip install "cgbench[ray]"  (or: pip install ray)'


class EngineError(RuntimeError):
    """An engine that cannot start or lost a unit for good; the message says what to do."""


class Engine(Protocol):
    """Runs independent units of work and yields ``(key, result)`` as each finishes."""

    name: str

    @property
    def max_in_flight(self) -> int:
        """How many units may be submitted and not yet yielded."""
        ...

    def map_unordered(
        self,
        fn: Callable[..., Any],
        jobs: Iterable[Job],
        *,
        init: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        """Run ``fn(*args)`` for every ``(key, args)`` of ``jobs``; yield ``(key, result)``."""
        ...

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalEngine:
    """A pool of forked worker processes on this machine (``workers=1`` runs in this process)."""

    name = "local"

    def __init__(self, workers: int | None = None, start_method: str = "fork") -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.start_method = start_method  # "spawn" for units that run torch (fork after torch hangs)

    @property
    def max_in_flight(self) -> int:
        return 2 * self.workers

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map_unordered(
        self,
        fn: Callable[..., Any],
        jobs: Iterable[Job],
        *,
        init: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Any, Any]]:
        if self.workers == 1:
            for key, args in jobs:
                yield key, fn(*args)
            return
        ctx = multiprocessing.get_context(self.start_method)
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init)
        pending: dict[Future, Any] = {}
        try:
            for key, args in jobs:
                pending[pool.submit(fn, *args)] = key
                while len(pending) >= self.max_in_flight:
                    yield from _drain(pending, wait(pending, return_when=FIRST_COMPLETED).done)
            while pending:
                yield from _drain(pending, wait(pending, return_when=FIRST_COMPLETED).done)
        except BaseException:  # Ctrl-C, a failed unit or a closed generator: stop now
            _stop_pool(pool)
            raise
        pool.shutdown()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the units not started and end the workers at once (units write atomically, so a
    killed worker leaves nothing partial; finished units stay finished for a resume)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # cleared by shutdown()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _drain(pending: dict[Future, Any], done: Iterable[Future]) -> Iterator[tuple[Any, Any]]:
    for future in done:
        key = pending.pop(future)
        yield key, future.result()


def get_engine(
    name: str = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    start_method: str = "fork",
) -> Engine:
    """The engine called ``name`` (``local`` or ``ray``).

    ``workers`` sizes the local pool (default: all CPUs) and ``start_method`` says how its
    processes start (``fork``, or ``spawn`` for units that use torch); ``address`` is the Ray cluster to join
    (``HOST:PORT``, ``auto``, ``ray://HOST:10001``; default ``$RAY_ADDRESS``, else a one-machine
    Ray started for this job). Raises :class:`EngineError` for an unknown name or when Ray is not
    installed.
    """
    if name == "local":
        if address is not None:
            raise EngineError("--ray-address only applies to --engine ray")
        return LocalEngine(workers, start_method)
    if name == "ray":
        try:
            from cgbench.benchmarks.engine_ray import RayEngine
        except ImportError as err:
            raise EngineError(
                f"--engine ray needs Ray, which is not installed ({err}); install the extra: "
                f"{RAY_INSTALL_HINT}"
            ) from err
        return RayEngine(address=address, num_cpus=workers)
    raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
