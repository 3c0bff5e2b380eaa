"""The leaderboard submission format (``cgbench-submission/1``): read, validate, checksum.

A submission is a directory::

    submission.yaml          metadata + one entry per task (schema: :class:`Submission`)
    predictions/...          one predictions file per task and seed (arch_id, score), CSV or Parquet

``submission.yaml`` names, per task, either ``predictions`` (``{seed: file}`` for every seed of
the task, or one file that has a ``seed`` column or holds seed-independent scores) or
``predictor: module:Class`` (run by ``cgbench.eval`` like ``cgbench evaluate --predictor``).

Everything a submission names is checked before anything is scored: the schema (unknown fields
are errors), task names, seeds, and every file (relative path inside the directory, no ``..``,
no symbolic link on the way, a plain file under :data:`MAX_FILE_BYTES`, a safe name). YAML is
read with ``yaml.safe_load``: custom tags (``!!python/object`` ...) are refused.
"""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cgbench.benchmarks.store import sha256_file
from cgbench.benchmarks.tasks import Task, TaskError, parse_task

__all__ = [
    "SUBMISSION_FORMAT",
    "SUBMISSION_FILE",
    "MAX_FILE_BYTES",
    "MAX_YAML_BYTES",
    "SubmissionError",
    "TaskEntry",
    "Submission",
    "LoadedSubmission",
    "load_submission",
    "slugify",
]

SUBMISSION_FORMAT = "cgbench-submission/1"
SUBMISSION_FILE = "submission.yaml"
#: the largest predictions file accepted (all 423,624 NB-101 archs x 5 seeds as CSV is ~40 MB)
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_YAML_BYTES = 256 * 1024
#: file names inside a submission: letters, digits, ``._-`` and ``/`` between parts
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_PREDICTION_SUFFIXES = (".csv", ".parquet")

Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class SubmissionError(ValueError):
    """A submission that cannot be scored: the message names the file, the field and the fix."""


class TaskEntry(BaseModel):
    """One task of a submission: its predictions files, or a ``module:Class`` predictor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: ShortText
    predictions: dict[int, ShortText] | ShortText | None = None
    predictor: ShortText | None = None


class Submission(BaseModel):
    """``submission.yaml``: who made the predictor, how, and what it predicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["cgbench-submission/1"]
    name: ShortText
    authors: Annotated[list[ShortText], Field(min_length=1, max_length=50)]
    contact: ShortText
    paper_url: ShortText | None = None
    code_url: ShortText | None = None
    license: ShortText
    description: Text
    training_data: Text
    hardware: ShortText
    hparam_search_budget: ShortText
    tasks: Annotated[list[TaskEntry], Field(min_length=1, max_length=500)]

    @field_validator("name")
    @classmethod
    def _name_has_a_slug(cls, value: str) -> str:
        if not slugify(value):
            raise ValueError("needs at least one letter or digit")
        return value


@dataclass(frozen=True)
class LoadedSubmission:
    """A validated submission: metadata, parsed tasks and resolved files with their checksums."""

    directory: Path
    meta: Submission
    tasks: tuple[tuple[Task, TaskEntry], ...]
    files: dict[str, str]  # relative path -> sha256 (submission.yaml included)

    @property
    def slug(self) -> str:
        return slugify(self.meta.name)

    @property
    def sha256(self) -> str:
        """One checksum of the whole submission: its files' names and contents."""
        return files_digest(self.files)

    def path(self, relative: str) -> Path:
        return self.directory / relative

    def prediction_files(self, entry: TaskEntry) -> Iterator[tuple[int | None, str]]:
        """``(seed, relative path)`` pairs of an entry (seed ``None``: one file for all seeds)."""
        if isinstance(entry.predictions, str):
            yield None, entry.predictions
        elif entry.predictions is not None:
            yield from sorted(entry.predictions.items())


def slugify(text: str) -> str:
    """A file-name-safe, lower-case form of ``text`` (``"My GNN v2"`` -> ``"my-gnn-v2"``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def files_digest(files: dict[str, str]) -> str:
    """SHA-256 over sorted ``path<TAB>sha256`` lines."""
    text = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _checked_file(directory: Path, relative: str, where: str, *, max_bytes: int = MAX_FILE_BYTES) -> Path:
    """``directory / relative`` after the safety checks; raises :class:`SubmissionError`."""
    if relative.startswith("/") or PurePosixPath(relative).is_absolute() or re.match(r"^[A-Za-z]:", relative):
        raise SubmissionError(f"{where}: {relative!r} is an absolute path; give a path inside the submission")
    if ".." in PurePosixPath(relative).parts:
        raise SubmissionError(f"{where}: {relative!r} leaves the submission directory ('..')")
    if not _SAFE_PATH.match(relative):
        raise SubmissionError(
            f"{where}: unsafe file name {relative!r}; use letters, digits, '.', '_', '-' and '/' only"
        )
    path = directory
    for part in PurePosixPath(relative).parts:
        path = path / part
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise SubmissionError(f"{where}: {relative!r} does not exist in {directory}") from None
        if stat.S_ISLNK(st.st_mode):
            raise SubmissionError(f"{where}: {relative!r} goes through a symbolic link; copy the file in")
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionError(f"{where}: {relative!r} is not a regular file")
    if st.st_size > max_bytes:
        raise SubmissionError(
            f"{where}: {relative!r} has {st.st_size:,} bytes, over the limit of {max_bytes:,}; "
            "store scores as float32 Parquet or drop archs outside the task"
        )
    return path


def _pydantic_message(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        kind = item["type"]
        msg = "unknown field (not in cgbench-submission/1)" if kind == "extra_forbidden" else item["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def load_submission(directory: str | Path) -> LoadedSubmission:
    """Read and validate a submission directory; raises :class:`SubmissionError` naming every
    problem of the first kind found (schema, task names, seeds, files)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SubmissionError(
            f"{directory}: not a directory; a submission is a folder with {SUBMISSION_FILE}"
        )
    yaml_path = _checked_file(directory, SUBMISSION_FILE, str(directory), max_bytes=MAX_YAML_BYTES)
    where = str(yaml_path)
    try:
        raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SubmissionError(
            f"{where}: not plain YAML ({first}); custom tags and Python objects are not accepted"
        ) from None
    except UnicodeDecodeError:
        raise SubmissionError(f"{where}: not UTF-8 text") from None
    if not isinstance(raw, dict):
        raise SubmissionError(f"{where}: the top level must be a mapping of fields (see docs/leaderboard.md)")
    try:
        meta = Submission.model_validate(raw)
    except ValidationError as err:
        raise SubmissionError(f"{where}: {_pydantic_message(err)}") from None

    files = {SUBMISSION_FILE: sha256_file(yaml_path)}
    tasks: list[tuple[Task, TaskEntry]] = []
    seen: set[str] = set()
    for i, entry in enumerate(meta.tasks):
        at = f"{where}: tasks[{i}] ({entry.task})"
        try:
            task = parse_task(entry.task)
        except TaskError as err:
            raise SubmissionError(f"{at}: {err}") from None
        if task.name in seen:
            raise SubmissionError(f"{at}: task listed twice")
        seen.add(task.name)
        if (entry.predictions is None) == (entry.predictor is None):
            raise SubmissionError(f"{at}: give exactly one of 'predictions' or 'predictor'")
        if isinstance(entry.predictions, dict):
            given, wanted = set(entry.predictions), set(task.seeds)
            if given != wanted:
                missing, extra = sorted(wanted - given), sorted(given - wanted)
                detail = "; ".join(
                    s
                    for s in (
                        missing and f"missing seeds {missing}",
                        extra and f"seeds {extra} not in the task",
                    )
                    if s
                )
                raise SubmissionError(
                    f"{at}: predictions must cover the task's seeds {list(task.seeds)}: {detail}"
                )
        if entry.predictor is not None and ":" not in entry.predictor:
            raise SubmissionError(f"{at}: predictor must be 'module:Class', got {entry.predictor!r}")
        for seed, relative in LoadedSubmission(directory, meta, (), {}).prediction_files(entry):
            label = at if seed is None else f"{at}, seed {seed}"
            path = _checked_file(directory, relative, label)
            if path.suffix.lower() not in _PREDICTION_SUFFIXES:
                raise SubmissionError(f"{label}: {relative!r} must be .csv or .parquet")
            files[relative] = sha256_file(path)
        tasks.append((task, entry))
    return LoadedSubmission(directory, meta, tuple(tasks), files)
