"""NAS-Bench-101: the cell space, its PyTorch network, and its upstream label files.

Cell ("module") spec: an upper-triangular 0/1 adjacency matrix over at most 7 vertices (vertex 0
= input, the last = output) with at most 9 edges, and one op per interior vertex out of
``conv3x3-bn-relu``, ``conv1x1-bn-relu``, ``maxpool3x3``. A spec is *pruned* first (vertices not on
an input -> output path are removed, ``model_spec.py``), and identified by the official
isomorphism-invariant module hash (``graph_util.hash_module``), the key of the official release.

Network (``nasbench/lib/model_builder.py``), CIFAR-10 32x32, eval mode: 3x3 conv-BN-ReLU stem with
128 channels; 3 stacks of 3 cells; before stacks 2 and 3 a 2x2 max-pool (stride 2) and the channel
count doubles; inside a cell the output channels are split over the vertices feeding the output
(``compute_vertex_channels``), edges from the input are 1x1 conv-BN-ReLU projections, edges between
interior vertices truncate channels, interior vertices sum their inputs, the output concatenates
its interior inputs and adds the projected input when connected to it; global average pool,
linear classifier.

Upstream files: the official ``nasbench_only108.tfrecord`` / ``nasbench_full.tfrecord``
(``NB101(tfrecord=PATH)``, streamed, bounded memory); the default source, the union of
nasbench-vis's ``data-20k.json`` (20,001 archs: official module hash, one run's 4/12/36/108-epoch
validation accuracy, training time, params; specs recovered through the cached hash -> spec index
of the whole space, :func:`hash_index`) and NASLib's ``zc_nasbench101.json`` (500 archs with
zero-cost proxies); GENNAPE's ``gpi_nb101_comp_graph_cache.pkl``
(``NB101(gennape_cache=PATH)``). Without labels: ``NB101(random_specs=N, seed=S)`` (valid random
specs) or ``NB101(all_specs=True)`` (the full enumeration of the 423,624 unique cells).
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import os
import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cgbench.loaders.base import (
    ArchRecord,
    Family,
    LoaderError,
    ModuleCache,
    Segment,
    cached,
    read_json,
    report_step,
    shared,
    upstream_number,
)
from cgbench.loaders.blocks import ConvBlock, set_eval, sum_inputs
from cgbench.loaders.gennape import GENNAPE_LABEL_COLUMNS

INPUT, OUTPUT = "input", "output"
CONV3X3, CONV1X1, MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
# The official ``available_ops`` order: the hash labels interior ops by their index here.
OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)
# NASLib's 56-int tuple: 49 adjacency bits, then 7 op indices into this list.
NASLIB_OPS = (INPUT, OUTPUT, MAXPOOL3X3, CONV1X1, CONV3X3)
MAX_VERTICES = 7
MAX_EDGES = 9
NUM_UNIQUE_SPECS = 423_624

STEM_CHANNELS = 128
NUM_STACKS = 3
CELLS_PER_STACK = 3
NUM_CLASSES = 10

NASLIB_JSON = "nb101/naslib_zc_nasbench101_500archs.json"
VIS_JSON = "nb101/nasbench_vis_data-20k.json"
VIS_BUDGETS = (4, 12, 36, 108)
TFRECORD_108 = "nb101/nasbench_only108.tfrecord"
TFRECORD_FULL = "nb101/nasbench_full.tfrecord"
ZC_PROXIES = (
    "epe_nas", "fisher", "grad_norm", "grasp", "jacov", "l2_norm", "plain", "snip", "synflow",
)  # fmt: skip
REPEATS = 3  # training runs per cell and budget in the official release


# ---------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class NB101Spec:
    """A pruned, validated cell: ``matrix`` rows/cols = vertices, ``ops`` one label per vertex."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def hash(self) -> str:
        """The official module hash (``ModelSpec.hash_spec(available_ops)``), computed once per
        spec (random draws hash each spec for uniqueness, then the build records it)."""
        h = self.__dict__.get("_hash")
        if h is None:
            labels = [-1] + [OPS.index(op) for op in self.ops[1:-1]] + [-2]
            h = hash_module(self.matrix, labels)
            object.__setattr__(self, "_hash", h)  # a memo, not a field: eq / repr ignore it
        return h

    def config(self) -> dict[str, Any]:
        return {"matrix": [list(r) for r in self.matrix], "ops": list(self.ops)}

    def in_space(self) -> bool:
        """Within NAS-Bench-101's space: at most 7 vertices and 9 edges."""
        return self.num_vertices <= MAX_VERTICES and self.num_edges <= MAX_EDGES


def hash_module(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """The official graph-invariant MD5 hash of a (pruned) adjacency matrix and integer labels.

    Same result as ``nasbench.lib.graph_util.hash_module`` (the key of the official release):
    start from md5 of ``str((out_degree, in_degree, label))`` per vertex, refine ``V`` times
    with the sorted hashes of in- and out-neighbours, then md5 of the sorted final hashes.
    """
    return module_hasher(matrix)(labels)


def module_hasher(matrix: Sequence[Sequence[int]]) -> Callable[[Sequence[int]], str]:
    """:func:`hash_module` of ``matrix`` as a function of the labels (the degrees and
    neighbour lists are computed once: the enumeration hashes every labelling of a matrix)."""
    n = len(matrix)
    out_deg = [sum(matrix[v]) for v in range(n)]
    in_deg = [sum(matrix[w][v] for w in range(n)) for v in range(n)]
    preds = [[w for w in range(n) if matrix[w][v]] for v in range(n)]
    succs = [[w for w in range(n) if matrix[v][w]] for v in range(n)]
    md5 = hashlib.md5

    def hasher(labels: Sequence[int]) -> str:
        hashes = [md5(str((out_deg[v], in_deg[v], int(labels[v]))).encode()).hexdigest() for v in range(n)]
        for _ in range(n):
            hashes = [
                md5(
                    (
                        "".join(sorted(hashes[w] for w in preds[v]))
                        + "|"
                        + "".join(sorted(hashes[w] for w in succs[v]))
                        + "|"
                        + hashes[v]
                    ).encode()
                ).hexdigest()
                for v in range(n)
            ]
        return md5(str(sorted(hashes)).encode()).hexdigest()

    return hasher


def prune(
    matrix: Sequence[Sequence[int]], ops: Sequence[str]
) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]] | None:
    """Remove vertices not on an input -> output path (``ModelSpec._prune``); ``None`` when the
    input does not reach the output."""
    n = len(ops)
    from_input, frontier = {0}, [0]
    while frontier:
        top = frontier.pop()
        for v in range(top + 1, n):
            if matrix[top][v] and v not in from_input:
                from_input.add(v)
                frontier.append(v)
    from_output, frontier = {n - 1}, [n - 1]
    while frontier:
        top = frontier.pop()
        for v in range(top):
            if matrix[v][top] and v not in from_output:
                from_output.add(v)
                frontier.append(v)
    keep = sorted(from_input & from_output)
    if len(keep) < 2:  # official: more than V-2 extraneous vertices -> invalid
        return None
    return (
        tuple(tuple(int(matrix[r][c]) for c in keep) for r in keep),
        tuple(ops[i] for i in keep),
    )


def make_spec(matrix: Any, ops: Any, *, where: str = "spec", check_space: bool = True) -> NB101Spec:
    """Validate and prune a raw spec. Raises :class:`LoaderError` naming ``where`` and the fix.

    ``check_space`` also requires NAS-Bench-101's limits (after pruning at most 7 vertices and 9
    edges); the builder itself handles any valid cell.
    """
    hint = (
        "an NB-101 spec is a square upper-triangular 0/1 matrix (zero diagonal) and one op per "
        f"vertex: {INPUT!r}, then {', '.join(map(repr, OPS))}, then {OUTPUT!r}"
    )
    try:
        rows = [list(r) for r in matrix]
        ops = [str(o) for o in ops]
    except TypeError:
        raise LoaderError(f"{where}: malformed spec (matrix {matrix!r}, ops {ops!r}); {hint}") from None
    n = len(rows)
    if n < 2 or any(len(r) != n for r in rows):
        raise LoaderError(f"{where}: the adjacency matrix is not square ({n} rows); {hint}")
    if len(ops) != n:
        raise LoaderError(f"{where}: {len(ops)} ops for a {n}x{n} matrix; {hint}")
    try:
        ints = [[int(v) for v in r] for r in rows]
    except (TypeError, ValueError):
        raise LoaderError(f"{where}: the adjacency matrix holds non-integers; {hint}") from None
    if any(v not in (0, 1) for r in ints for v in r) or any(
        r[c] for i, r in enumerate(ints) for c in range(i + 1)
    ):
        raise LoaderError(
            f"{where}: the adjacency matrix is not upper-triangular 0/1 (an edge must go from a "
            f"lower to a higher vertex); {hint}"
        )
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise LoaderError(f"{where}: first op must be {INPUT!r} and last {OUTPUT!r}, got {ops}")
    bad = [o for o in ops[1:-1] if o not in OPS]
    if bad:
        raise LoaderError(f"{where}: unknown op(s) {bad}; {hint}")
    pruned = prune(ints, ops)
    if pruned is None:
        raise LoaderError(
            f"{where}: disconnected spec: no path from the input to the output vertex; fix the "
            "adjacency matrix (the official API rejects it too)"
        )
    spec = NB101Spec(*pruned)
    if check_space and not spec.in_space():
        raise LoaderError(
            f"{where}: outside NAS-Bench-101's space after pruning ({spec.num_vertices} vertices, "
            f"{spec.num_edges} edges; at most {MAX_VERTICES} and {MAX_EDGES})"
        )
    return spec


def spec_from_config(config: Any, *, where: str = "config") -> NB101Spec:
    """The spec of a record's ``config`` (``{"matrix": ..., "ops": ...}``)."""
    if not isinstance(config, Mapping) or "matrix" not in config or "ops" not in config:
        raise LoaderError(f"{where}: expected {{'matrix': [[...]], 'ops': [...]}}, got {config!r}")
    return make_spec(config["matrix"], config["ops"], where=where, check_space=False)


def from_naslib_tuple(values: Sequence[int] | str, *, where: str = "") -> NB101Spec:
    """NASLib's 56-int tuple (49 adjacency bits row-major, 7 op indices) -> pruned spec."""
    try:
        vals = ast.literal_eval(values) if isinstance(values, str) else list(values)
        vals = [int(v) for v in vals]
    except (ValueError, SyntaxError, TypeError):
        raise LoaderError(f"{where}: {values!r} is not an NB-101 tuple of 56 ints") from None
    if len(vals) != 56:
        raise LoaderError(f"{where}: NB-101 tuple has {len(vals)} ints, expected 56 (49 + 7)")
    if any(v not in range(len(NASLIB_OPS)) for v in vals[49:]):
        raise LoaderError(f"{where}: op indices {vals[49:]} outside 0-{len(NASLIB_OPS) - 1}")
    matrix = [vals[r * 7 : r * 7 + 7] for r in range(7)]
    return make_spec(matrix, [NASLIB_OPS[i] for i in vals[49:]], where=where)


# ---------------------------------------------------------------------------- generators
def _spec_key(spec: NB101Spec) -> int:
    """An exact integer key of a spec's matrix and ops (not isomorphism-invariant)."""
    key = spec.num_vertices
    for row in spec.matrix:
        for v in row:
            key = key * 2 + v
    for op in spec.ops[1:-1]:
        key = key * 3 + OPS.index(op)
    return key


def random_specs(count: int, seed: int = 0, *, unique: bool = True) -> Iterator[NB101Spec]:
    """``count`` valid random cells: NASLib's / the official sampler (each of the 21 possible
    edges with probability 1/2, uniform ops), rejected until in-space after pruning; with
    ``unique`` no two share a module hash. Not uniform over the 423,624 cells (cells with many
    raw forms are likelier): see :func:`uniform_specs`."""
    rng = random.Random(seed)
    seen: set[str] = set()
    seen_raw: set[int] = set()  # exact pruned forms already drawn: skips most re-hashing
    made = 0
    while made < count:
        bits = rng.getrandbits(21)
        matrix = [[0] * 7 for _ in range(7)]
        k = 0
        for r in range(7):
            for c in range(r + 1, 7):
                matrix[r][c] = (bits >> k) & 1
                k += 1
        ops = (INPUT, *(rng.choice(OPS) for _ in range(5)), OUTPUT)
        pruned = prune(matrix, ops)
        if pruned is None:
            continue
        spec = NB101Spec(*pruned)
        if not spec.in_space():
            continue
        if unique:
            raw = _spec_key(spec)
            if raw in seen_raw:
                continue
            seen_raw.add(raw)
            h = spec.hash()
            if h in seen:
                continue
            seen.add(h)
        made += 1
        yield spec


def uniform_specs(count: int, seed: int = 0) -> Iterator[tuple[str, NB101Spec]]:
    """``count`` cells drawn uniformly without replacement from all 423,624 (reservoir sampling
    over :func:`all_specs`; GENNAPE's "50k random sample of 423k"), as ``(hash, spec)`` in
    enumeration order. Enumerates the whole space first (about 2 minutes)."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, str, NB101Spec]] = []
    for i, (h, spec) in enumerate(all_specs()):
        if i < count:
            reservoir.append((i, h, spec))
        else:
            j = rng.randrange(i + 1)
            if j < count:
                reservoir[j] = (i, h, spec)
    for _, h, spec in sorted(reservoir, key=lambda t: t[0]):
        yield h, spec


def all_specs() -> Iterator[tuple[str, NB101Spec]]:
    """Every unique cell of NAS-Bench-101 as ``(module_hash, spec)``: 423,624 in all.

    The official generator's procedure: for 2-7 vertices, every upper-triangular matrix in which
    all vertices lie on an input -> output path with at most 9 edges, every labelling of its
    interior vertices; duplicates (same hash = isomorphic) are skipped, first one wins. About
    1.3 million hashes (a minute or two on one core); memory: the set of seen hashes (~60 MB).
    See :func:`hash_index` for the same enumeration, in parallel and cached.
    """
    seen: set[str] = set()
    chunks = enumeration_chunks()
    for done, chunk in enumerate(chunks):
        report_step("nb101: enumerating all cells", done, len(chunks))
        for h, code in enumerate_chunk(*chunk):
            if h not in seen:
                seen.add(h)
                yield h, spec_from_code(code)


def _pairs(n: int) -> list[tuple[int, int]]:
    """The upper-triangular positions of an ``n``-vertex matrix in enumeration bit order."""
    return [(x, y) for y in range(n) for x in range(y)]


def enumeration_chunks(pieces: int = 32) -> list[tuple[int, int, int]]:
    """The enumeration cut into ``(vertices, first bits, end bits)`` ranges, in order: one per
    vertex count below 7, ``pieces`` for 7 vertices (2^21 adjacency patterns)."""
    chunks = [(n, 0, 1 << len(_pairs(n))) for n in range(2, MAX_VERTICES)]
    total = 1 << len(_pairs(MAX_VERTICES))
    step = total // pieces
    chunks += [(MAX_VERTICES, lo, min(lo + step, total)) for lo in range(0, total, step)]
    return chunks


def enumerate_chunk(n: int, lo: int, hi: int) -> Iterator[tuple[str, int]]:
    """``(module_hash, spec code)`` of every labelled cell with ``n`` vertices whose adjacency bits
    lie in ``[lo, hi)``, in enumeration order (isomorphic duplicates included)."""
    pairs = _pairs(n)
    labelings = list(itertools.product(range(len(OPS)), repeat=n - 2))
    for bits in range(lo, hi):
        if bin(bits).count("1") > MAX_EDGES:
            continue
        matrix = [[0] * n for _ in range(n)]
        for i, (x, y) in enumerate(pairs):
            if (bits >> i) & 1:
                matrix[x][y] = 1
        if not all(any(matrix[r]) for r in range(n - 1)):
            continue
        if not all(any(matrix[r][c] for r in range(n)) for c in range(1, n)):
            continue
        hasher = module_hasher(matrix)
        for number, labels in enumerate(labelings):
            yield hasher((-1, *labels, -2)), n + (bits << 3) + (number << 24)


def spec_from_code(code: int) -> NB101Spec:
    """The spec of an enumeration code (``vertices + 8 * adjacency bits + 2^24 * labelling``)."""
    n, bits, number = code & 7, (code >> 3) & ((1 << 21) - 1), code >> 24
    if not 2 <= n <= MAX_VERTICES or number >= len(OPS) ** (n - 2):
        raise LoaderError(f"{code} is not an NB-101 enumeration code")
    matrix = [[0] * n for _ in range(n)]
    for i, (x, y) in enumerate(_pairs(n)):
        if (bits >> i) & 1:
            matrix[x][y] = 1
    ops = []
    for _ in range(n - 2):
        number, digit = divmod(number, len(OPS))
        ops.append(OPS[digit])
    return NB101Spec(tuple(tuple(r) for r in matrix), (INPUT, *reversed(ops), OUTPUT))


# ---------------------------------------------------------------------------- hash -> spec index
INDEX_VERSION = 1
INDEX_NAME = f"nb101-hash-index-v{INDEX_VERSION}"


def index_dir() -> Path:
    """Where the hash index is cached: ``$CGBENCH_NB101_INDEX``, else ``index/`` under the data
    root (``$CGBENCH_HOME``, else ``~/.cache/cgbench``: the store's rule)."""
    env = os.environ.get("CGBENCH_NB101_INDEX")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("CGBENCH_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "cgbench") / "index"


@dataclass(frozen=True)
class HashIndex:
    """Every NB-101 module hash (sorted, ASCII hex) with the code of its canonical spec (the
    first of its isomorphism class in the enumeration order: :func:`spec_from_code`)."""

    hashes: Any  # np.ndarray, dtype S32, sorted
    codes: Any  # np.ndarray, int64

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, hashes: Sequence[str]) -> Any:
        """Codes of ``hashes`` (``-1`` where a hash is not in the space), as an int64 array."""
        import numpy as np

        wanted = np.asarray([h.encode() if _is_hash(h) else b"" for h in hashes], "S32")
        pos = np.searchsorted(self.hashes, wanted).clip(0, len(self.hashes) - 1)
        found = self.hashes[pos] == wanted
        return np.where(found, self.codes[pos], -1)

    def spec(self, module_hash: str) -> NB101Spec:
        """The canonical spec of ``module_hash``; :class:`LoaderError` if it is not in the space."""
        code = int(self.find([module_hash])[0])
        if code < 0:
            raise LoaderError(f"{module_hash!r} is not the module hash of any NAS-Bench-101 cell")
        return spec_from_code(code)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _chunk_path(work: Path, number: int) -> Path:
    return work / f"chunk-{number:03d}.npz"


def _save_npz(path: Path, **arrays: Any) -> None:
    """Write an npz atomically (temporary file in the same folder, then rename)."""
    import numpy as np

    from cgbench.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _index_chunk(args: tuple[int, tuple[int, int, int], str]) -> int:
    """Worker: enumerate one chunk, keep each hash's first spec, save it (atomically)."""
    import numpy as np

    number, chunk, work = args
    first: dict[str, int] = {}
    for h, code in enumerate_chunk(*chunk):
        first.setdefault(h, code)
    _save_npz(
        _chunk_path(Path(work), number),
        hashes=np.asarray(list(first), "S32"),
        codes=np.asarray(list(first.values()), np.int64),
    )
    return number


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def load_hash_index(directory: Path | None = None) -> HashIndex | None:
    """The cached index in ``directory`` (default :func:`index_dir`), verified against its
    sidecar (format version, count, sha256); ``None`` when none is cached. A cached index that
    fails verification raises :class:`LoaderError` (delete it to rebuild)."""
    import numpy as np

    directory = Path(directory) if directory is not None else index_dir()
    data, meta_path = directory / f"{INDEX_NAME}.npz", directory / f"{INDEX_NAME}.json"
    if not meta_path.is_file():
        return None
    fix = f"delete {data} and {meta_path} to rebuild it"
    try:
        meta = json.loads(meta_path.read_text())
        ok = meta.get("version") == INDEX_VERSION and meta.get("n") == NUM_UNIQUE_SPECS
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise LoaderError(f"{meta_path}: not an NB-101 hash index of version {INDEX_VERSION}; {fix}")
    if not data.is_file() or _sha256(data) != meta.get("sha256"):
        raise LoaderError(f"{data}: missing or checksum mismatch with {meta_path.name}; {fix}")
    with np.load(data, allow_pickle=False) as z:
        index = HashIndex(z["hashes"], z["codes"])
    if len(index) != NUM_UNIQUE_SPECS:
        raise LoaderError(f"{data}: {len(index):,} hashes, expected {NUM_UNIQUE_SPECS:,}; {fix}")
    return index


def hash_index(
    directory: Path | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HashIndex:
    """The hash -> canonical spec index of all 423,624 cells, built once and cached.

    Built by enumerating the space in :func:`enumeration_chunks` on ``workers`` processes
    (default: all CPUs); each finished chunk is saved atomically in ``<name>.partial/``, so an
    interrupted build resumes. The merged index (``<name>.npz``) and its sidecar (``<name>.json``:
    version, count, sha256) are written atomically, the sidecar last; ``progress(done, total)``
    is called per chunk.
    """
    import multiprocessing

    import numpy as np

    directory = Path(directory) if directory is not None else index_dir()
    cached_index = load_hash_index(directory)
    if cached_index is not None:
        return cached_index
    started = time.perf_counter()
    work = directory / f"{INDEX_NAME}.partial"
    work.mkdir(parents=True, exist_ok=True)
    chunks = enumeration_chunks()
    todo = [(i, c, str(work)) for i, c in enumerate(chunks) if not _chunk_path(work, i).is_file()]
    done = len(chunks) - len(todo)
    # largest chunks first (7 vertices, high bits: edges into the output) for load balance
    todo.sort(key=lambda t: (-t[1][0], -t[1][1]))
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if todo and workers == 1:
        for item in todo:
            _index_chunk(item)
            done += 1
            if progress:
                progress(done, len(chunks))
    elif todo:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers) as pool:
            for _ in pool.imap_unordered(_index_chunk, todo):
                done += 1
                if progress:
                    progress(done, len(chunks))
    hashes, codes = [], []
    for i in range(len(chunks)):
        with np.load(_chunk_path(work, i), allow_pickle=False) as z:
            hashes.append(z["hashes"])
            codes.append(z["codes"])
    all_hashes, first = np.unique(np.concatenate(hashes), return_index=True)  # first = enumeration order
    all_codes = np.concatenate(codes)[first]
    if len(all_hashes) != NUM_UNIQUE_SPECS:
        raise LoaderError(
            f"{work}: the enumeration gave {len(all_hashes):,} hashes, expected {NUM_UNIQUE_SPECS:,}; "
            f"delete {work} and rebuild"
        )
    data, meta_path = directory / f"{INDEX_NAME}.npz", directory / f"{INDEX_NAME}.json"
    _save_npz(data, hashes=all_hashes, codes=all_codes)
    meta = {
        "format": "cgbench-nb101-hash-index",
        "version": INDEX_VERSION,
        "n": int(len(all_hashes)),
        "sha256": _sha256(data),
        "code": "vertices + 8 * adjacency bits (enumeration order) + 2**24 * labelling number",
        "seconds": round(time.perf_counter() - started, 1),
        "workers": workers,
    }
    from cgbench.files import atomic_write

    atomic_write(meta_path, json.dumps(meta, indent=1) + "\n")
    for i in range(len(chunks)):
        _chunk_path(work, i).unlink(missing_ok=True)
    work.rmdir()
    return HashIndex(all_hashes, all_codes)


# ---------------------------------------------------------------------------- PyTorch model
def compute_vertex_channels(c_in: int, c_out: int, matrix: Sequence[Sequence[int]]) -> list[int]:
    """Output channels of every vertex (``model_builder.compute_vertex_channels``).

    The vertices feeding the output split ``c_out`` (the first ``c_out % k`` get one extra
    channel); every other interior vertex takes the largest count among its successors.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[n - 1] = c_in, c_out
    if n == 2:
        return channels
    fan_in = sum(matrix[v][n - 1] for v in range(1, n))
    interior, correction = divmod(c_out, fan_in)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = interior
            if correction:
                channels[v] += 1
                correction -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v][dst]:
                    channels[v] = max(channels[v], channels[dst])
        if channels[v] <= 0:
            raise LoaderError(f"vertex {v} of {matrix} gets no channels: not a pruned spec")
    return channels


def _conv_bn_relu(c_in: int, c_out: int, k: int, cache: ModuleCache | None) -> nn.Module:
    return cached(cache, ("nb101_conv_bn_relu", k, c_in, c_out),
                  lambda: ConvBlock(c_in, c_out, k, order="cba"))  # fmt: skip


def _vertex_op(op: str, c: int, cache: ModuleCache | None) -> nn.Module:
    if op == CONV3X3:
        return _conv_bn_relu(c, c, 3, cache)
    if op == CONV1X1:
        return _conv_bn_relu(c, c, 1, cache)
    return cached(cache, ("nb101_maxpool3x3",), lambda: nn.MaxPool2d(3, stride=1, padding=1))


class Cell(nn.Module):
    """One NB-101 module (``model_builder.build_module``)."""

    def __init__(self, spec: NB101Spec, c_in: int, c_out: int, cache: ModuleCache | None = None) -> None:
        super().__init__()
        self.matrix = spec.matrix
        n = spec.num_vertices
        self.channels = compute_vertex_channels(c_in, c_out, spec.matrix)
        self.vertex_ops = nn.ModuleDict(
            {str(t): _vertex_op(spec.ops[t], self.channels[t], cache) for t in range(1, n - 1)}
        )
        self.projections = nn.ModuleDict(
            {
                str(t): _conv_bn_relu(c_in, self.channels[t], 1, cache)
                for t in range(1, n)
                if spec.matrix[0][t]
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, ch = self.matrix, self.channels
        n = len(m)
        out = n - 1
        tensors = [x]
        concat = []
        for t in range(1, out):
            # interior inputs first (truncated to this vertex's channels), the projection last
            fan_in = [tensors[s][:, : ch[t]] if tensors[s].shape[1] > ch[t] else tensors[s]
                      for s in range(1, t) if m[s][t]]  # fmt: skip
            if m[0][t]:
                fan_in.append(self.projections[str(t)](x))
            tensors.append(self.vertex_ops[str(t)](sum_inputs(fan_in)))
            if m[t][out]:
                concat.append(tensors[t])
        if not concat:  # only input -> output
            return self.projections[str(out)](x)
        y = concat[0] if len(concat) == 1 else torch.cat(concat, 1)
        if m[0][out]:
            y = y + self.projections[str(out)](x)
        return y


class NB101Network(nn.Module):
    """The NB-101 CIFAR-10 network of one cell spec."""

    def __init__(
        self,
        spec: NB101Spec,
        *,
        stem_channels: int = STEM_CHANNELS,
        num_stacks: int = NUM_STACKS,
        cells_per_stack: int = CELLS_PER_STACK,
        num_classes: int = NUM_CLASSES,
        cache: ModuleCache | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.stem = _conv_bn_relu(3, stem_channels, 3, cache)
        layers: list[nn.Module] = []
        cells: dict[tuple[int, int], nn.Module] = {}  # tied cells: only with a cache
        c_in = c = stem_channels
        for stack in range(num_stacks):
            if stack:
                layers.append(cached(cache, ("nb101_downsample",), lambda: nn.MaxPool2d(2, stride=2)))
                c *= 2
            for _ in range(cells_per_stack):
                if cache is None:
                    layers.append(Cell(spec, c_in, c))
                else:
                    key = (c_in, c)
                    if key not in cells:
                        cells[key] = shared(Cell(spec, c_in, c, cache))
                    layers.append(cells[key])
                c_in = c
        self.layers = nn.Sequential(*layers)
        self.classifier = cached(
            cache, ("nb101_classifier", c, num_classes), lambda: nn.Linear(c, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.classifier(torch.mean(x, (2, 3)))


def build_network(spec: NB101Spec | Mapping, *, cache: ModuleCache | None = None) -> nn.Module:
    """The NB-101 network (eval mode) of a spec or a ``{"matrix", "ops"}`` config."""
    if not isinstance(spec, NB101Spec):
        spec = spec_from_config(spec)
    net = NB101Network(spec, cache=cache)
    return net.eval() if cache is None else set_eval(net)


# ---------------------------------------------------------------------------- network plan
class _Truncate(nn.Module):
    """The first ``c`` channels: a cell edge into an interior vertex narrower than its source."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.c]


class _Head(nn.Module):
    """Global average pool and the linear classifier (the end of :class:`NB101Network`)."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.mean(x, (2, 3)))


def _conv_step(k: int, c_in: int, c_out: int) -> tuple[tuple, Callable[[], nn.Module]]:
    return ("nb101_conv_bn_relu", k, c_in, c_out), partial(ConvBlock, c_in, c_out, k, order="cba")


def _vertex_step(op: str, c: int) -> tuple[tuple, Callable[[], nn.Module]]:
    if op == CONV3X3:
        return _conv_step(3, c, c)
    if op == CONV1X1:
        return _conv_step(1, c, c)
    return ("nb101_maxpool3x3",), partial(nn.MaxPool2d, 3, stride=1, padding=1)


def build_plan(spec: NB101Spec | Mapping) -> list[Segment]:
    """The network of :func:`build_network` as a plan of per-op segments (``Family.build_plan``):
    the same modules, called in the same order as :class:`Cell` and :class:`NB101Network` call
    them, so the build engine composes a graph equal to the full trace array for array from
    segments traced once per process (a cell's convolutions, pools, truncations and joins are
    shared by all cells of all archs with the same widths and resolution)."""
    if not isinstance(spec, NB101Spec):
        spec = spec_from_config(spec)
    plan: list[Segment] = []

    def step(key: tuple, factory: Callable[[], nn.Module] | None, inputs: tuple[int, ...], join=None) -> int:
        plan.append(Segment(key, factory, inputs, join))
        return len(plan) - 1

    prev = step(*_conv_step(3, 3, STEM_CHANNELS), (-1,))
    c_in = c = STEM_CHANNELS
    for stack in range(NUM_STACKS):
        if stack:
            prev = step(("nb101_downsample",), partial(nn.MaxPool2d, 2, stride=2), (prev,))
            c *= 2
        for _ in range(CELLS_PER_STACK):
            prev = _cell_plan(spec, c_in, c, prev, step)
            c_in = c
    step(("nb101_head", c, NUM_CLASSES), partial(_Head, c, NUM_CLASSES), (prev,))
    return plan


def _cell_plan(spec: NB101Spec, c_in: int, c_out: int, x: int, step: Callable[..., int]) -> int:
    """Append the steps of one :class:`Cell` (its ``forward``, op for op); the output step."""
    m = spec.matrix
    ch = compute_vertex_channels(c_in, c_out, m)
    out = len(m) - 1
    steps = [x] * len(m)
    concat = []
    for t in range(1, out):
        fan_in = [
            step(("nb101_truncate", ch[t]), partial(_Truncate, ch[t]), (steps[s],))
            if ch[s] > ch[t]
            else steps[s]
            for s in range(1, t)
            if m[s][t]
        ]
        if m[0][t]:
            fan_in.append(step(*_conv_step(1, c_in, ch[t]), (x,)))
        total = fan_in[0]
        for v in fan_in[1:]:
            total = step(("nb101_add",), None, (total, v), "add")
        steps[t] = step(*_vertex_step(spec.ops[t], ch[t]), (total,))
        if m[t][out]:
            concat.append(steps[t])
    if not concat:
        return step(*_conv_step(1, c_in, c_out), (x,))
    y = concat[0] if len(concat) == 1 else step(("nb101_concat",), None, tuple(concat), "concat")
    if m[0][out]:
        y = step(("nb101_add",), None, (y, step(*_conv_step(1, c_in, c_out), (x,))), "add")
    return y


# ---------------------------------------------------------------------------- label files
def _percent(value: Any) -> float | None:
    return None if value is None else float(value) / 100.0


def read_naslib_json(path: Path) -> Iterator[tuple[str, NB101Spec, dict[str, float | None]]]:
    """NASLib's ``zc_nasbench101.json`` -> ``(key, spec, labels)`` per arch, in file order."""
    data = read_json(path)
    try:
        table = data["nasbench101"]["cifar10"]
    except (KeyError, TypeError):
        raise LoaderError(
            f"{path}: expected {{'nasbench101': {{'cifar10': {{...}}}}}} (NASLib zc_nasbench101.json)"
        ) from None
    if not isinstance(table, Mapping):
        raise LoaderError(
            f"{path}: 'nasbench101' -> 'cifar10' is a {type(table).__name__}, not an object "
            "(NASLib zc_nasbench101.json)"
        )
    for row, (key, entry) in enumerate(table.items()):
        where = f"{path}, arch {row} ({key[:40]}...)"
        spec = from_naslib_tuple(key, where=where)
        if not isinstance(entry, Mapping):
            raise LoaderError(f"{where}: entry is not an object")
        labels: dict[str, float | None] = {
            "val_acc_108_naslib": _percent(upstream_number(entry.get("val_accuracy"))),
            "params_upstream": upstream_number(entry.get("params")),
            "flops_upstream": upstream_number(entry.get("flops")),
        }
        labels.update({f"zc_{p}": upstream_number(entry.get(p)) for p in ZC_PROXIES})
        labels["accuracy"] = labels["val_acc_108_naslib"]
        yield key, spec, labels


def read_vis_json(path: Path, index: HashIndex) -> Iterator[tuple[str, NB101Spec, dict[str, float | None]]]:
    """nasbench-vis's ``data-20k.json`` (column-wise: ``key`` = official module hash, per-budget
    final validation accuracy of one run, training time, trainable parameters) -> ``(hash,
    spec, labels)`` per arch, in file order; specs come from ``index``. Every row is checked
    before the first is yielded: a malformed file or a hash outside the space raises
    :class:`LoaderError` naming the row."""
    data = read_json(path)
    columns = ["key", *(f"{e}_final_validation_accuracy" for e in VIS_BUDGETS)]
    columns += ["final_training_time", "trainable_parameters"]
    hint = "expected nasbench-vis's column-wise data-20k.json ({column: [values]})"
    if not isinstance(data, Mapping):
        raise LoaderError(f"{path}: {hint}")
    missing = [c for c in columns if not isinstance(data.get(c), list)]
    if missing:
        raise LoaderError(f"{path}: column(s) {missing} missing or not lists; {hint}")
    n = len(data["key"])
    if any(len(data[c]) != n for c in columns):
        lengths = {c: len(data[c]) for c in columns}
        raise LoaderError(f"{path}: columns of different lengths {lengths}; {hint}")
    keys = data["key"]
    codes = index.find(keys)
    bad = [i for i in range(n) if codes[i] < 0]
    if bad:
        i = bad[0]
        raise LoaderError(
            f"{path}, row {i}: key {keys[i]!r} is not the module hash of any NAS-Bench-101 cell "
            f"({len(bad)} such row(s)); the file is corrupt or not nasbench-vis's data-20k.json"
        )
    for i, (h, code) in enumerate(zip(keys, codes.tolist(), strict=True)):
        labels: dict[str, float | None] = {}
        for e in VIS_BUDGETS:
            labels[f"val_acc_{e}_vis"] = _vis_number(data, f"{e}_final_validation_accuracy", i, path)
        labels["train_time_108_vis"] = _vis_number(data, "final_training_time", i, path)
        labels["params_upstream"] = _vis_number(data, "trainable_parameters", i, path) / 1e6
        labels["accuracy"] = labels["val_acc_108_vis"]
        yield h, spec_from_code(code), labels


def _vis_number(data: Mapping, column: str, row: int, path: Path) -> float:
    value = upstream_number(data[column][row])
    if value is None or isinstance(data[column][row], bool):
        raise LoaderError(
            f"{path}, row {row} ({data['key'][row]}): {column} = {data[column][row]!r} is not a number"
        )
    return value


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def tfrecord_labels(runs_by_budget: Mapping[int, list[Any]]) -> dict[str, float | None]:
    """Label columns of one cell from its tfrecord runs (``{epochs: [NASBenchRun, ...]}``)."""
    labels: dict[str, float | None] = {}
    for epochs, runs in sorted(runs_by_budget.items()):
        finals = [r.final for r in runs]
        val = [f["validation_accuracy"] for f in finals]
        test = [f["test_accuracy"] for f in finals]
        labels[f"val_acc_{epochs}"] = _mean(val)
        labels[f"test_acc_{epochs}"] = _mean(test)
        labels[f"train_time_{epochs}"] = _mean([f["training_time"] for f in finals])
        if epochs == 108:
            for i in range(REPEATS):
                labels[f"val_acc_108_run{i}"] = val[i] if i < len(val) else None
                labels[f"test_acc_108_run{i}"] = test[i] if i < len(test) else None
    labels["accuracy"] = labels.get("test_acc_108")
    return labels


def read_tfrecord(
    path: Path, *, budgets: Iterable[int] = (108,), check_crc: bool = True
) -> Iterator[tuple[str, NB101Spec, dict[str, float | None], int]]:
    """The official tfrecord, streamed: ``(module_hash, spec, labels, n_runs)`` per cell.

    Runs of one cell are grouped as they arrive (the official files keep them together); a cell
    is emitted as soon as it has ``3`` runs for every budget in ``budgets`` (records of other
    budgets are skipped), so memory stays bounded. Cells left incomplete at the end of the file
    are emitted with the runs found (``n_runs`` tells).
    """
    from cgbench.loaders.nasbench_tfrecord import iter_nasbench_runs

    budgets = tuple(sorted(set(int(b) for b in budgets)))
    pending: OrderedDict[str, tuple[NB101Spec, int, dict[int, list], tuple]] = OrderedDict()

    def emit(h: str) -> tuple[str, NB101Spec, dict[str, float | None], int]:
        spec, params, runs, _raw = pending.pop(h)
        labels = tfrecord_labels(runs)
        labels["params_upstream"] = params / 1e6
        return h, spec, labels, sum(len(v) for v in runs.values())

    for number, run in iter_nasbench_runs(path, check_crc=check_crc):
        if run.epochs not in budgets:
            continue
        entry = pending.get(run.module_hash)
        where = f"{path}: record {number} (hash {run.module_hash})"
        if entry is None:
            spec = make_spec(run.matrix, run.ops, where=where)
            if spec.hash() != run.module_hash:
                raise LoaderError(
                    f"{where}: the record's spec hashes to {spec.hash()}, not its module_hash; "
                    "the file is corrupt or not an official NAS-Bench-101 file"
                )
            entry = pending[run.module_hash] = (spec, run.trainable_parameters, {}, (run.matrix, run.ops))
        elif (run.matrix, run.ops) != entry[3]:
            spec = make_spec(run.matrix, run.ops, where=where)
            if spec.hash() != run.module_hash:
                raise LoaderError(
                    f"{where}: the record's spec hashes to {spec.hash()}, not its module_hash "
                    "(earlier records of this hash had another spec); the file is corrupt"
                )
        entry[2].setdefault(run.epochs, []).append(run)
        if all(len(entry[2].get(b, ())) >= REPEATS for b in budgets):
            yield emit(run.module_hash)
    for h in list(pending):
        yield emit(h)


# ---------------------------------------------------------------------------- the family
_TF = "official tfrecord"
_RUNS = "mean of the 3 runs"
LABEL_COLUMNS: dict[str, str] = {
    "val_acc_108": f"{_TF}: validation accuracy (fraction) after 108 epochs, {_RUNS}",
    "test_acc_108": f"{_TF}: test accuracy (fraction) after 108 epochs, {_RUNS}",
    **{
        f"{kind}_acc_108_run{i}": f"{_TF}: {name} accuracy (fraction) after 108 epochs, run {i}"
        for kind, name in (("val", "validation"), ("test", "test"))
        for i in range(REPEATS)
    },
    "train_time_108": f"{_TF}: training time in seconds (108 epochs, TPU v2), {_RUNS}",
    **{
        f"{kind}_{e}": f"{_TF} nasbench_full (budgets including {e}): {name} after {e} epochs, {_RUNS}"
        for e in (4, 12, 36)
        for kind, name in (
            ("val_acc", "validation accuracy (fraction)"),
            ("test_acc", "test accuracy (fraction)"),
            ("train_time", "training time (s)"),
        )
    },
    "val_acc_108_naslib": "NASLib zc_nasbench101.json: validation accuracy (fraction), 108 epochs, one run",
    **{
        f"val_acc_{e}_vis": f"nasbench-vis data-20k.json: validation accuracy (fraction), {e} epochs, one run"
        for e in VIS_BUDGETS
    },
    "train_time_108_vis": "nasbench-vis data-20k.json: training time in seconds (108 epochs), one run",
    "params_upstream": (
        f"trainable parameters in millions ({_TF} or nasbench-vis `trainable_parameters`, or NASLib `params`)"
    ),
    "flops_upstream": "NASLib `flops` in MFLOPs (tensorwatch rules: cgbench convention `nb101`)",
    **GENNAPE_LABEL_COLUMNS,
    **{f"zc_{p}": f"zero-cost proxy {p} (NASLib zc_nasbench101.json, cifar10)" for p in ZC_PROXIES},
}
TAG_COLUMNS: dict[str, tuple[str, str]] = {
    "label_source": (
        "string",
        "which upstream label feeds `accuracy`: test_acc_108 (official tfrecord, mean of 3 runs), "
        "val_acc_108_vis (nasbench-vis 20k, one run), val_acc_108_naslib (NASLib, one run; archs "
        "not in the 20k file), acc_gennape, or none (generated specs)",
    ),
    "cell_vertices": ("int64", "vertices of the pruned cell (2-7)"),
    "cell_edges": ("int64", "edges of the pruned cell (1-9)"),
    "num_runs": ("int64", "official tfrecord: training runs found for the cell"),
}


class NB101(Family):
    """NAS-Bench-101 on CIFAR-10.

    Sources (one per instance): default, nasbench-vis's 20k archs and NASLib's 500 (their union,
    20,293 archs; the first use builds the hash -> spec index, a few minutes, cached under
    ``$CGBENCH_HOME/index`` or ``$CGBENCH_NB101_INDEX``); ``tfrecord=PATH``
    (official release, ``budgets`` as in :func:`read_tfrecord`); ``gennape_cache=PATH``;
    ``random_specs=N`` (with ``seed``; ``uniform=True`` draws uniformly from the enumerated
    space instead of with the official sampler); ``all_specs=True`` (all 423,624 cells,
    unlabelled).
    """

    name = "nb101"
    dataset = "cifar10"
    input_shape = (3, 32, 32)
    sources = (VIS_JSON, NASLIB_JSON)
    label_columns = LABEL_COLUMNS
    tag_columns = TAG_COLUMNS

    def __init__(
        self,
        *,
        tfrecord: str | Path | None = None,
        budgets: Iterable[int] = (108,),
        gennape_cache: str | Path | None = None,
        random_specs: int | None = None,
        seed: int = 0,
        uniform: bool = False,
        all_specs: bool = False,
        check_crc: bool = True,
    ) -> None:
        chosen = [tfrecord is not None, gennape_cache is not None, random_specs is not None, all_specs]
        if sum(chosen) > 1:
            raise LoaderError(
                "NB101(): give at most one of tfrecord=, gennape_cache=, random_specs=, all_specs="
            )
        self.tfrecord = Path(tfrecord) if tfrecord is not None else None
        self.budgets = tuple(budgets)
        self.gennape_cache = Path(gennape_cache) if gennape_cache is not None else None
        self.random_specs = random_specs
        self.seed = seed
        self.uniform = uniform
        self.all_specs = all_specs
        self.check_crc = check_crc
        if any(chosen):
            self.sources = ()
        if random_specs is not None:
            self.expected_rows = random_specs
        elif all_specs:
            self.expected_rows = NUM_UNIQUE_SPECS

    # -------------------------------------------------------------- records
    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        index = None
        default = not (self.tfrecord or self.gennape_cache or self.random_specs is not None or self.all_specs)
        if default and VIS_JSON in paths:
            # eagerly: built (once) before the build engine starts its workers
            index = load_hash_index()
            if index is None:
                print(
                    f"nb101: building the hash -> spec index of all {NUM_UNIQUE_SPECS:,} cells in "
                    f"{index_dir()} (once; a few minutes)",
                    file=sys.stderr,
                    flush=True,
                )
                index = hash_index(progress=lambda d, t: report_step("nb101: hash index", d, t))
        return itertools.islice(self._records(paths, index), limit)

    def _records(self, paths: Mapping[str, Path], index: HashIndex | None = None) -> Iterator[ArchRecord]:
        if self.tfrecord is not None:
            for h, spec, labels, n_runs in read_tfrecord(
                self.tfrecord, budgets=self.budgets, check_crc=self.check_crc
            ):
                yield _record(h, spec, labels, "test_acc_108", num_runs=n_runs)
        elif self.gennape_cache is not None:
            yield from read_gennape_cache(self.gennape_cache)
        elif self.random_specs is not None and self.uniform:
            for h, spec in uniform_specs(self.random_specs, self.seed):
                yield _record(h, spec, {}, "none")
        elif self.random_specs is not None:
            for spec in random_specs(self.random_specs, self.seed):
                yield _record(spec.hash(), spec, {}, "none")
        elif self.all_specs:
            for h, spec in all_specs():
                yield _record(h, spec, {}, "none")
        else:
            yield from read_label_files(paths, index)

    # -------------------------------------------------------------- model
    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        return build_network(spec_from_config(config), cache=cache)

    def build_plan(self, config: Any) -> list[Segment]:
        return build_plan(spec_from_config(config))


def read_label_files(paths: Mapping[str, Path], index: HashIndex | None = None) -> Iterator[ArchRecord]:
    """NB101's default source: the union of the label files present in ``paths`` (the build
    passes both): nasbench-vis's 20k archs first (file order), then NASLib's archs not among
    them; an arch in both keeps NASLib's columns too. ``index`` defaults to :func:`hash_index`."""
    given = [k for k in (VIS_JSON, NASLIB_JSON) if k in paths]
    if not given:
        raise LoaderError(
            f"nb101: sources {VIS_JSON!r} / {NASLIB_JSON!r} not given; run `cgbench download nb101` "
            "or pass a mirror"
        )
    naslib: dict[str, tuple[NB101Spec, dict]] = {}
    if NASLIB_JSON in paths:
        for _key, spec, labels in read_naslib_json(paths[NASLIB_JSON]):
            naslib.setdefault(spec.hash(), (spec, labels))  # isomorphic duplicate: keep the first
    if VIS_JSON in paths:
        index = index if index is not None else hash_index()
        for h, spec, labels in read_vis_json(paths[VIS_JSON], index):
            extra = naslib.pop(h, (None, {}))[1]
            merged = {**{k: v for k, v in extra.items() if k != "accuracy"}, **labels}
            yield _record(h, spec, merged, "val_acc_108_vis")
    for h, (spec, labels) in naslib.items():
        yield _record(h, spec, labels, "val_acc_108_naslib")


def _record(
    h: str,
    spec: NB101Spec,
    labels: dict[str, float | None],
    label_source: str,
    *,
    num_runs: int | None = None,
) -> ArchRecord:
    labels = dict(labels)
    labels.setdefault("accuracy", None)
    if labels["accuracy"] is None:
        label_source = "none"
    tags: dict[str, Any] = {
        "label_source": label_source,
        "cell_vertices": spec.num_vertices,
        "cell_edges": spec.num_edges,
    }
    if num_runs is not None:
        tags["num_runs"] = num_runs
    return ArchRecord(arch_id=h, config=spec.config(), labels=labels, tags=tags)


# ---------------------------------------------------------------------------- GENNAPE cache
def read_gennape_cache(path: Path) -> Iterator[ArchRecord]:
    """GENNAPE's ``gpi_nb101_comp_graph_cache.pkl``: a pickled list of dicts with ``compute
    graph``, ``acc``, ``flops``, ``n_params``, ``original config`` = ``(ops, adjacency)``; read
    through the restricted unpickler of :mod:`cgbench.loaders.gennape` (GENNAPE's own graph is
    not used: the network is rebuilt from ``original config``)."""
    from cgbench.loaders.gennape import iter_gennape_cache

    for row, entry in enumerate(iter_gennape_cache(path)):
        where = f"{path}, entry {row}"
        try:
            ops, adj = entry["original config"]
        except (KeyError, TypeError, ValueError):
            raise LoaderError(
                f"{where}: `original config` is not (ops, adjacency); is this GENNAPE's NB-101 cache?"
            ) from None
        spec = make_spec(_tolist(adj), list(ops), where=where)
        acc = upstream_number(entry.get("acc"))
        if acc is not None and acc > 1.0:  # GENNAPE stores fractions; tolerate percent
            acc /= 100.0
        labels = {
            "acc_gennape": acc,
            "accuracy": acc,
            "flops_gennape": upstream_number(entry.get("flops")),
            "params_gennape": upstream_number(entry.get("n_params")),
        }
        yield _record(spec.hash(), spec, labels, "acc_gennape")


def _tolist(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else obj
