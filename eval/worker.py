"""Run a ``module:Class`` predictor in a separate worker process that never sees a label column.

``module:Class`` is the user's code: it runs with the user's rights, in a child process
(``python -m cgbench.eval.worker``). The harness sends it, through a narrow message interface
on a private pipe, only:

- the family's arch ids and the names of its *feature* columns (the columns a predictor may
  read: graphs, FLOPs, params, zero-cost proxies), then each feature column the predictor
  reads, once, when it first reads it; a label column is refused on the harness side, so
  its values never cross;
- the fit labels of the fit set (and of the valid split / fine-tune sample) where the task's
  protocol gives them to ``fit`` / ``fine_tune``;
- the row numbers to predict.

It gets back only numbers: the class's flags and each ``predict``'s scores. Messages are JSON
headers plus Arrow IPC tables, never pickles, in both directions. The predictor's ``print``
goes to stderr (the pipe is a private file descriptor). An exception raised by the user's code
comes back with its type, message and traceback (``remote_traceback``, also as a note).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import pyarrow as pa

from cgbench.eval.data import ArchSet, FeatureSource, HiddenColumnError, UnknownColumnError
from cgbench.eval.predictor import PredictorError, PredictorSpec
from cgbench.eval.validation import EvalError, ValidationError

__all__ = ["WorkerError", "worker_spec", "WorkerPredictor"]

_HEADER = struct.Struct("<Q")
#: cgbench errors re-raised in the harness under their own class
_ERRORS: dict[str, type[Exception]] = {
    c.__name__: c for c in (HiddenColumnError, UnknownColumnError, PredictorError, ValidationError, EvalError)
}


class WorkerError(PredictorError):
    """The worker process died or broke the protocol."""


# ---------------------------------------------------------------------------- framing
def _send(out: IO[bytes], header: dict, table: pa.Table | None = None) -> None:
    payload = b""
    if table is not None:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        payload = sink.getvalue()
    head = json.dumps({**header, "payload": len(payload)}).encode()
    out.write(_HEADER.pack(len(head)) + head + payload)
    out.flush()


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = inp.read(left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(inp: IO[bytes]) -> tuple[dict, pa.Table | None]:
    (n,) = _HEADER.unpack(_read_exact(inp, _HEADER.size))
    header = json.loads(_read_exact(inp, n))
    size = header.pop("payload", 0)
    table = None
    if size:
        table = pa.ipc.open_stream(pa.py_buffer(_read_exact(inp, size))).read_all()
    return header, table


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


# ---------------------------------------------------------------------------- harness side
class _Worker:
    """One worker process serving one ``module:Class`` spec (every seed and task)."""

    def __init__(self, spec: str) -> None:
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([os.getcwd(), *paths]))
        self.spec = spec
        self._lock = threading.Lock()
        self._sources: dict[str, FeatureSource] = {}  # family -> the FeatureSource last introduced
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cgbench.eval.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=os.getcwd(),
            env=env,
        )
        self._finalizer = weakref.finalize(self, _stop, self._proc)
        self.flags = self.call({"op": "init", "spec": spec})

    def call(self, header: dict, table: pa.Table | None = None) -> dict:
        with self._lock:
            try:
                _send(self._proc.stdin, header, table)
                reply, _ = _recv(self._proc.stdout)
                while "need" in reply:  # the predictor reads a feature column: send it, once
                    _send(self._proc.stdin, *self._columns(reply["need"], reply["columns"]))
                    reply, _ = _recv(self._proc.stdout)
            except (EOFError, BrokenPipeError, OSError, ValueError) as err:
                code = self._proc.poll()
                raise WorkerError(
                    f"predictor {self.spec!r}: its worker process stopped ({type(err).__name__}"
                    f"{'' if code is None else f', exit code {code}'}); see its output above"
                ) from None
        if "error" in reply:
            raise _remote_error(reply["error"])
        return reply

    def _columns(self, family: str, names: list[str]) -> tuple[dict, pa.Table | None]:
        source = self._sources.get(family)
        try:
            if source is None:
                raise WorkerError(f"no feature source of {family!r} was sent")
            return {}, pa.table({c: source.raw_column(c) for c in names})  # labels: refused here
        except Exception as err:  # noqa: BLE001 - the refusal goes back to the predictor
            return {
                "error": {"type": type(err).__name__, "message": str(err.args[0] if err.args else err)}
            }, None

    def ensure_family(self, source: FeatureSource) -> None:
        """Introduce ``source`` to the worker: its arch ids and column names (columns follow on
        demand)."""
        if self._sources.get(source.family) is not source:
            head = pa.table({"arch_id": source.raw_column("arch_id")})
            self.call(
                {
                    "op": "features",
                    "family": source.family,
                    "hidden": sorted(source.hidden),
                    "columns": source.column_names,
                },
                head,
            )
            self._sources[source.family] = source

    def close(self) -> None:
        self._finalizer()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            _send(proc.stdin, {"op": "close"})
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            proc.kill()
            proc.wait()


def _remote_error(info: dict) -> Exception:
    name, message = info.get("type", "Exception"), info.get("message", "")
    cls = _ERRORS.get(name)
    if cls is None:
        candidate = getattr(builtins, name, None)
        cls = candidate if isinstance(candidate, type) and issubclass(candidate, Exception) else None
    try:
        err = cls(message) if cls is not None else PredictorError(f"{name}: {message}")
    except Exception:  # noqa: BLE001 - an exception class with another signature
        err = PredictorError(f"{name}: {message}")
    err.remote_where = None if name in _ERRORS else info.get("where")  # type: ignore[attr-defined]
    err.remote_traceback = info.get("traceback", "")  # type: ignore[attr-defined]
    if err.remote_traceback and name not in _ERRORS:
        err.add_note("raised in the predictor's worker process:\n" + err.remote_traceback.rstrip())
    return err


class WorkerPredictor:
    """The harness's handle on one predictor (one seed) living in a worker process."""

    def __init__(self, worker: _Worker, seed: int) -> None:
        self._worker = worker
        reply = worker.call({"op": "make", "seed": seed})
        self._handle = reply["handle"]
        self.has_fit = reply["has_fit"]
        if not reply["has_fine_tune"]:
            self.fine_tune = None  # the harness then fits on the target sample

    def _rows(self, graphs: ArchSet) -> dict:
        source = graphs._source
        self._worker.ensure_family(source)
        return {"family": source.family, "rows": graphs.row_indices.tolist()}

    def fit(self, graphs: ArchSet, labels: np.ndarray, valid_graphs=None, valid_labels=None) -> None:
        msg = {"op": "fit", "handle": self._handle, **self._rows(graphs), "labels": _floats(labels)}
        if valid_graphs is not None and valid_labels is not None:
            valid = self._rows(valid_graphs)
            msg.update(
                valid_family=valid["family"], valid_rows=valid["rows"], valid_labels=_floats(valid_labels)
            )
        self._worker.call(msg)

    def fine_tune(self, graphs: ArchSet, labels: np.ndarray) -> None:
        self._worker.call(
            {"op": "fine_tune", "handle": self._handle, **self._rows(graphs), "labels": _floats(labels)}
        )

    def predict(self, graphs: ArchSet) -> np.ndarray:
        reply = self._worker.call({"op": "predict", "handle": self._handle, **self._rows(graphs)})
        scores = np.asarray(reply["scores"], dtype=np.float64)
        return scores.reshape(reply["shape"])

    def __del__(self) -> None:
        try:
            self._worker.call({"op": "drop", "handle": self._handle})
        except Exception:  # noqa: BLE001 - the worker may be gone at shutdown
            pass


def worker_spec(spec: str) -> PredictorSpec:
    """A :class:`PredictorSpec` for ``module:Class`` run in a worker process (started now, so
    an import error is reported before any data is read)."""
    worker = _Worker(spec)
    flags = worker.flags
    return PredictorSpec(
        name=spec,
        factory=lambda seed: WorkerPredictor(worker, seed),
        deterministic=flags["deterministic"],
        requires_fit=flags["requires_fit"],
        predicts_label=flags["predicts_label"],
        source="class",
    )


# ---------------------------------------------------------------------------- worker side
def _where(err: BaseException) -> str | None:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"


class _RemoteFeatures(FeatureSource):
    """The worker's feature source: columns are fetched from the harness when first read."""

    def __init__(self, family: str, head: pa.Table, columns: list[str], hidden: list[str], pipe) -> None:
        super().__init__(family, head, hidden=hidden, columns=columns)
        self._pipe = pipe

    def _load(self, names: Sequence[str]) -> dict[str, pa.ChunkedArray]:
        inp, out = self._pipe
        _send(out, {"need": self.family, "columns": list(names)})
        reply, table = _recv(inp)
        if "error" in reply:
            raise _remote_error(reply["error"])
        return {c: table.column(c) for c in names}


def _serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from cgbench.eval.predictor import _import_target, call_fit, predictor_spec

    spec: PredictorSpec | None = None
    sources: dict[str, FeatureSource] = {}
    predictors: dict[int, Any] = {}

    def archs(family: str, rows: Sequence[int]) -> ArchSet:
        return ArchSet(sources[family], np.asarray(rows, dtype=np.int64))

    while True:
        try:
            msg, table = _recv(inp)
        except EOFError:
            return
        op = msg.get("op")
        try:
            if op == "close":
                return
            if op == "init":
                target = _import_target(msg["spec"])
                spec = predictor_spec(target, name=msg["spec"])
                reply = {
                    "deterministic": spec.deterministic,
                    "requires_fit": spec.requires_fit,
                    "predicts_label": spec.predicts_label,
                }
            elif op == "features":
                sources[msg["family"]] = _RemoteFeatures(
                    msg["family"], table, msg["columns"], msg["hidden"], (inp, out)
                )
                reply = {}
            elif op == "make":
                predictor = spec.make(int(msg["seed"]))
                handle = len(predictors) + 1
                while handle in predictors:
                    handle += 1
                predictors[handle] = predictor
                reply = {
                    "handle": handle,
                    "has_fit": callable(getattr(predictor, "fit", None)),
                    "has_fine_tune": callable(getattr(predictor, "fine_tune", None)),
                }
            elif op == "fit":
                valid = None
                if "valid_rows" in msg:
                    valid = (archs(msg["valid_family"], msg["valid_rows"]), np.asarray(msg["valid_labels"]))
                call_fit(
                    predictors[msg["handle"]],
                    archs(msg["family"], msg["rows"]),
                    np.asarray(msg["labels"]),
                    valid,
                )
                reply = {}
            elif op == "fine_tune":
                predictors[msg["handle"]].fine_tune(
                    archs(msg["family"], msg["rows"]), np.asarray(msg["labels"])
                )
                reply = {}
            elif op == "predict":
                raw = predictors[msg["handle"]].predict(archs(msg["family"], msg["rows"]))
                try:
                    scores = np.asarray(raw, dtype=np.float64)
                except (TypeError, ValueError) as err:
                    raise ValidationError(
                        f"predictions of {spec.name!r}: not numbers ({type(raw).__name__}: {err})"
                    ) from None
                reply = {"scores": scores.ravel().tolist(), "shape": list(scores.shape)}
            elif op == "drop":
                predictors.pop(msg["handle"], None)
                reply = {}
            else:
                raise WorkerError(f"unknown worker operation {op!r}")
        except Exception as err:  # noqa: BLE001 - every failure goes back to the harness
            reply = {
                "error": {
                    "type": type(err).__name__,
                    "message": str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err),
                    "where": _where(err),
                    "traceback": traceback.format_exc(),
                }
            }
        _send(out, reply)


def main() -> None:
    """Serve the harness on the original stdin/stdout; the predictor's prints go to stderr."""
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _serve(inp, out)


if __name__ == "__main__":
    main()
