"""The input batch of a zero-cost proxy: a user-supplied image batch or a seeded synthetic one.

A user batch is an ``.npz`` file with ``x``: float32 images ``(N, C, H, W)`` (normalised as the
family's networks expect, e.g. CIFAR-10 mean/std) and ``y``: integer class labels ``(N,)``.
It is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Batch", "BatchError", "load_batch", "synthetic_batch"]


class BatchError(ValueError):
    """A data batch file that cannot be used; the message names the file and the expected form."""


@dataclass
class Batch:
    """Images ``x`` (float32, N×C×H×W), labels ``y`` (int64, N) or ``None`` (then seeded random
    labels over the network's classes), the ``seed`` of everything random, and where the
    images came from: ``source`` is ``"synthetic"`` or ``"file:<path>"``."""

    x: torch.Tensor
    y: torch.Tensor | None
    seed: int
    source: str

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    def labels_for(self, num_classes: int) -> torch.Tensor:
        """Class labels for a network with ``num_classes`` outputs."""
        if self.y is None:
            gen = torch.Generator().manual_seed(self.seed + 1)
            return torch.randint(0, num_classes, (self.size,), generator=gen)
        top = int(self.y.max())
        if top >= num_classes or int(self.y.min()) < 0:
            raise BatchError(
                f"{self.source.removeprefix('file:')}: labels 'y' range {int(self.y.min())}..{top}, "
                f"but the network has {num_classes} classes; use labels in 0..{num_classes - 1}"
            )
        return self.y


def synthetic_batch(input_shape: tuple[int, int, int], batch_size: int = 32, seed: int = 0) -> Batch:
    """A seeded N(0, 1) image batch of ``batch_size`` × ``input_shape`` with random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *input_shape)).astype(np.float32)
    return Batch(torch.from_numpy(x), None, seed, "synthetic")


def load_batch(path: str | Path, input_shape: tuple[int, int, int], seed: int = 0) -> Batch:
    """Read a user image batch and check it against the family's ``input_shape`` (C, H, W)."""
    path = Path(path)
    want = f"'x': float32 array of shape (N, {', '.join(map(str, input_shape))}) and 'y': integer labels (N,)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise BatchError(f"{path}: no such data batch file; expected an .npz with {want}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise BatchError(f"{path}: not a readable .npz file ({err}); expected {want}") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise BatchError(f"{path}: missing array(s) {missing} (it has {sorted(arrays)}); expected {want}")
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.float32:
        raise BatchError(
            f"{path}: 'x' has dtype {x.dtype}; expected {want} (convert with x.astype('float32'))"
        )
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape) or x.shape[0] < 2:
        raise BatchError(f"{path}: 'x' has shape {tuple(x.shape)}; expected {want}, N >= 2")
    if not np.isfinite(x).all():
        raise BatchError(f"{path}: 'x' holds NaN or inf values; expected finite {want}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise BatchError(f"{path}: 'y' has dtype {y.dtype} and shape {tuple(y.shape)}; expected {want}")
    return Batch(
        torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)), seed, f"file:{path}"
    )
