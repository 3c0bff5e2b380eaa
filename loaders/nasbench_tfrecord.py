"""NAS-Bench-101's official ``.tfrecord`` files, read without TensorFlow.

A TFRecord file is a sequence of frames::

    uint64 length (little endian) | uint32 masked CRC32C of the 8 length bytes
    data (length bytes)           | uint32 masked CRC32C of the data

with ``masked(crc) = ((crc >> 15 | crc << 17) + 0xA282EAD8) mod 2**32``. Both checksums are
verified (the C ``crc32c`` package, a dependency of ``tfrecord``, does the arithmetic). In
NAS-Bench-101's ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord`` each record's data is a
JSON list ``[module_hash, epochs, raw_adjacency, raw_operations, raw_metrics]``: the adjacency as a
string of ``0``/``1`` digits (row-major), the operations comma-separated, and the metrics a base64
``nasbench.ModelMetrics`` protobuf (``nasbench/lib/model_metrics.proto``), declared here through
protobuf's descriptor API so no generated code or ``protoc`` is needed.

Every error names the file, the record number and its byte offset, and what to do.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from cgbench.loaders.base import LoaderError

try:  # the C implementation shipped with the ``tfrecord`` dependency
    from crc32c import crc32c as _crc32c
except ImportError:  # pragma: no cover - pure-Python fallback (slow, but correct)
    _CRC_TABLE: list[int] = []
    for _i in range(256):
        _c = _i
        for _ in range(8):
            _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
        _CRC_TABLE.append(_c)

    def _crc32c(data: bytes | memoryview) -> int:
        crc = 0xFFFFFFFF
        for b in bytes(data):
            crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
# A NAS-Bench-101 record is a few hundred bytes; anything this large is a corrupt length field.
MAX_RECORD_BYTES = 64 << 20


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord record (length, CRCs): what TensorFlow's writer emits."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def iter_tfrecord_frames(
    path: str | Path, *, check_crc: bool = True, start_offset: int = 0
) -> Iterator[tuple[int, int, bytes]]:
    """``(record_number, byte_offset, data)`` for each record of a TFRecord file.

    Raises :class:`LoaderError` for a truncated file or a checksum mismatch (naming the record and
    its offset). ``start_offset`` resumes at a record boundary returned by an earlier iteration
    (record numbers then count from there).
    """
    path = Path(path)
    try:
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise LoaderError(f"{path}: cannot open the TFRecord file ({exc}); check the path") from exc
    try:
        fh.seek(start_offset)
        number, offset = 0, start_offset
        while True:
            header = fh.read(_HEADER.size)
            if not header:
                return
            where = f"{path}: record {number} at byte offset {offset}"
            if len(header) < _HEADER.size:
                raise LoaderError(
                    f"{where}: the file ends inside a record header ({len(header)} of 12 bytes): "
                    "the file is truncated; download it again (and compare its sha256)"
                )
            length, length_crc = _HEADER.unpack(header)
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise LoaderError(
                    f"{where}: length checksum mismatch (CRC32C): the file is corrupt or not a "
                    "TFRecord file; download it again"
                )
            if length > MAX_RECORD_BYTES:
                raise LoaderError(
                    f"{where}: implausible record length {length} bytes: the file is corrupt or "
                    "not a TFRecord file; download it again"
                )
            data = fh.read(length)
            footer = fh.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                raise LoaderError(
                    f"{where}: the file ends inside the record ({len(data)} of {length} data "
                    "bytes): the file is truncated; download it again (and compare its sha256)"
                )
            if check_crc and masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
                raise LoaderError(
                    f"{where}: data checksum mismatch (CRC32C): the record is corrupt; download "
                    "the file again"
                )
            yield number, offset, data
            number += 1
            offset += _HEADER.size + length + _FOOTER.size
    finally:
        fh.close()


# ------------------------------------------------------------------ ModelMetrics protobuf
def _build_metrics_class() -> type:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="cgbench/nasbench_model_metrics.proto", package="nasbench", syntax="proto2"
    )
    f = descriptor_pb2.FieldDescriptorProto
    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    ev = fdp.message_type.add(name="EvaluationData")
    for number, name, typ in (
        (1, "current_epoch", f.TYPE_DOUBLE),
        (2, "training_time", f.TYPE_DOUBLE),
        (3, "train_accuracy", f.TYPE_DOUBLE),
        (4, "validation_accuracy", f.TYPE_DOUBLE),
        (5, "test_accuracy", f.TYPE_DOUBLE),
        (6, "checkpoint_path", f.TYPE_STRING),
    ):
        ev.field.add(name=name, number=number, type=typ, label=opt)
    mm = fdp.message_type.add(name="ModelMetrics")
    mm.field.add(
        name="evaluation_data", number=1, type=f.TYPE_MESSAGE, label=rep,
        type_name=".nasbench.EvaluationData",
    )  # fmt: skip
    mm.field.add(name="trainable_parameters", number=2, type=f.TYPE_INT32, label=opt)
    mm.field.add(name="total_time", number=3, type=f.TYPE_DOUBLE, label=opt)
    pool = descriptor_pool.DescriptorPool()  # private: never clashes with nasbench's own pb2
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))


ModelMetrics = _build_metrics_class()
EvaluationData = ModelMetrics.DESCRIPTOR.fields_by_name["evaluation_data"].message_type
_EVAL_FIELDS = ("current_epoch", "training_time", "train_accuracy", "validation_accuracy",
                "test_accuracy")  # fmt: skip


@dataclass
class NASBenchRun:
    """One record of a NAS-Bench-101 tfrecord: one training run of one cell at one budget."""

    module_hash: str
    epochs: int
    matrix: list[list[int]]
    ops: list[str]
    trainable_parameters: int
    total_time: float
    # evaluation_data as dicts: [0] at step 0, [1] halfway, [2] end of training (api.py)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.evaluations[-1]


def decode_metrics(raw: str | bytes, where: str) -> tuple[int, float, list[dict[str, float]]]:
    """Decode a base64 ``ModelMetrics``: ``(trainable_parameters, total_time, evaluations)``."""
    try:
        blob = base64.b64decode(raw, validate=True)
        msg = ModelMetrics.FromString(blob)
    except (binascii.Error, ValueError, DecodeError) as exc:
        raise LoaderError(
            f"{where}: raw_metrics is not a base64 nasbench.ModelMetrics protobuf ({exc}); the "
            "file is corrupt or not a NAS-Bench-101 tfrecord"
        ) from exc
    evals = [{name: float(getattr(e, name)) for name in _EVAL_FIELDS} for e in msg.evaluation_data]
    return int(msg.trainable_parameters), float(msg.total_time), evals


def encode_metrics(trainable_parameters: int, total_time: float, evaluations: list[dict[str, Any]]) -> str:
    """Base64 ``ModelMetrics`` (the inverse of :func:`decode_metrics`; used to write fixtures)."""
    msg = ModelMetrics(trainable_parameters=trainable_parameters, total_time=total_time)
    for ev in evaluations:
        msg.evaluation_data.add(**ev)
    return base64.b64encode(msg.SerializeToString()).decode("ascii")


def parse_nasbench_record(data: bytes, where: str) -> NASBenchRun:
    """One record's data (the JSON list) as a :class:`NASBenchRun`."""
    try:
        row = json.loads(data.decode("utf-8"))
        module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = row
        epochs = int(epochs)
        bits = [int(c) for c in str(raw_adjacency)]
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise LoaderError(
            f"{where}: not a NAS-Bench-101 record (expected a JSON list [module_hash, epochs, "
            f"raw_adjacency, raw_operations, raw_metrics]: {exc}); is this the official "
            "nasbench_only108.tfrecord / nasbench_full.tfrecord?"
        ) from exc
    dim = int(round(len(bits) ** 0.5))
    if dim * dim != len(bits) or any(b not in (0, 1) for b in bits):
        raise LoaderError(
            f"{where} (hash {module_hash}): raw_adjacency {raw_adjacency!r} is not a square 0/1 "
            "matrix; the record is corrupt"
        )
    matrix = [bits[r * dim : (r + 1) * dim] for r in range(dim)]
    ops = str(raw_operations).split(",")
    params, total_time, evals = decode_metrics(raw_metrics, f"{where} (hash {module_hash})")
    if not evals:
        raise LoaderError(
            f"{where} (hash {module_hash}): the metrics hold no evaluation data; the record is corrupt"
        )
    return NASBenchRun(str(module_hash), epochs, matrix, ops, params, total_time, evals)


def encode_nasbench_record(
    module_hash: str,
    epochs: int,
    matrix: list[list[int]],
    ops: list[str],
    trainable_parameters: int,
    total_time: float,
    evaluations: list[dict[str, Any]],
) -> bytes:
    """The data of one official record (JSON list, metrics as base64 protobuf)."""
    raw_adj = "".join(str(int(v)) for row in matrix for v in row)
    raw = [module_hash, int(epochs), raw_adj, ",".join(ops),
           encode_metrics(trainable_parameters, total_time, evaluations)]  # fmt: skip
    return json.dumps(raw).encode("utf-8")


def iter_nasbench_runs(path: str | Path, *, check_crc: bool = True) -> Iterator[tuple[int, NASBenchRun]]:
    """``(record_number, run)`` for every record of an official NAS-Bench-101 tfrecord."""
    for number, offset, data in iter_tfrecord_frames(path, check_crc=check_crc):
        yield number, parse_nasbench_record(data, f"{path}: record {number} (byte offset {offset})")


def write_tfrecord(path: str | Path, records: list[bytes]) -> None:
    """Write ``records`` (raw data) as a TFRecord file."""
    with open(path, "wb") as fh:
        for data in records:
            fh.write(frame_record(data))
