"""NAS-Bench-301: the DARTS cell space on CIFAR-10 with surrogate (and trained) labels.

Genotype: a normal and a reduction cell, each 4 intermediate nodes (2-5) fed by two
``(op, input)`` pairs, inputs 0 and 1 being the outputs of the two previous cells; the cell
output concatenates nodes 2-5. Ops: ``max_pool_3x3``, ``avg_pool_3x3``, ``skip_connect``,
``sep_conv_3x3``, ``sep_conv_5x5``, ``dil_conv_3x3``, ``dil_conv_5x5`` (DARTS's ``none`` is not in
NAS-Bench-301's space).

Network (DARTS ``NetworkCIFAR``, the one NB-301 trained, quark0/darts ``model.py`` and
``operations.py``), CIFAR-10 32x32, eval mode: 3x3 conv + BN stem with ``3 C`` channels; ``layers``
cells, reduction cells (stride 2 on the edges from inputs 0/1, channels doubled) at
``layers // 3`` and ``2 layers // 3``; each cell preprocesses its two inputs with ReLU-conv1x1-BN,
or FactorizedReduce for the first one after a reduction; ops as in DARTS (``sep_conv`` = two
ReLU-depthwise-pointwise-BN units, ``dil_conv`` = one with dilation 2, pooling 3x3 with
``count_include_pad=False`` for avg, ``skip_connect`` = identity or FactorizedReduce when
reducing, all BN affine); global average pool, linear classifier. NB-301's evaluation size is
``C = 32``, 8 cells. The auxiliary head (training only) is not part of the graph and drop-path is
off in eval.

Sources: NASLib's ``zc_nasbench301.json`` (default: 725 archs, surrogate label + zero-cost
proxies), NB-301's training-result JSONs (``NB301(results=PATH)``, a file or a directory of
``results_*.json``), a text file of DARTS genotype strings (``NB301(genotypes=PATH)``, one per
line, parsed without ``eval``), GENNAPE's ``gpi_nb301_comp_graph_cache.pkl``
(``NB301(gennape_cache=PATH)``); any of those labelled by the NB-301 surrogate when the
``nasbench301`` package and its model files are present (``surrogate_dir=PATH``).
"""

from __future__ import annotations

import ast
import itertools
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cgbench.loaders.base import (
    ArchRecord,
    Family,
    LoaderError,
    ModuleCache,
    cached,
    read_json,
    upstream_number,
)
from cgbench.loaders.blocks import (
    ConvBlock,
    DilConv,
    FactorizedReduce,
    SepConv,
    set_eval,
)
from cgbench.loaders.gennape import GENNAPE_LABEL_COLUMNS

# NASLib compact: op indices into this list (SOURCES.md, naslib nasbench301/conversions.py).
OPS = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
    "dil_conv_3x3", "dil_conv_5x5",
)  # fmt: skip
NUM_NODES = 4  # intermediate nodes per cell
DEFAULT_CONCAT = (2, 3, 4, 5)
INIT_CHANNELS = 32  # NB-301's evaluation network
LAYERS = 8
STEM_MULTIPLIER = 3
NUM_CLASSES = 10

NASLIB_JSON = "nb301/naslib_zc_nasbench301_725archs.json"
RESULTS_JSON = "nb301/nasbench301_test_results_0.json"
ZC_PROXIES = (
    "epe_nas", "fisher", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "plain", "snip",
    "synflow",
)  # fmt: skip
_CS = "NetworkSelectorDatasetInfo:darts:"  # NB-301 ConfigSpace prefix
_EDGE_OFFSET = {2: 0, 3: 2, 4: 5, 5: 9}  # first ConfigSpace edge index of node k


# ---------------------------------------------------------------------------- genotypes
Cell = tuple[tuple[str, int], ...]


def make_genotype(
    normal: Any,
    reduce: Any,
    normal_concat: Any = DEFAULT_CONCAT,
    reduce_concat: Any = DEFAULT_CONCAT,
    *,
    where: str = "genotype",
) -> dict[str, Any]:
    """A validated genotype as a config dict (JSON-ready): ``{"normal": [[op, input], ...],
    "normal_concat": [...], "reduce": ..., "reduce_concat": ...}``.

    Raises :class:`LoaderError` naming ``where`` and the problem (unknown op, bad input index,
    wrong number of edges).
    """
    out: dict[str, Any] = {}
    cells = (("normal", normal, normal_concat), ("reduce", reduce, reduce_concat))
    for kind, cell, concat in cells:
        try:
            pairs = [(str(op), int(inp)) for op, inp in cell]
        except (TypeError, ValueError):
            raise LoaderError(f"{where}: {kind} cell {cell!r} is not a list of (op, input) pairs") from None
        if len(pairs) != 2 * NUM_NODES:
            raise LoaderError(
                f"{where}: {kind} cell has {len(pairs)} (op, input) pairs; NB-301 cells have "
                f"{2 * NUM_NODES} (two per intermediate node)"
            )
        for i, (op, inp) in enumerate(pairs):
            if op not in OPS:
                raise LoaderError(
                    f"{where}: unknown genotype op {op!r} in the {kind} cell (edge {i}); NB-301 "
                    f"ops are {', '.join(OPS)}"
                )
            node = 2 + i // 2
            if not 0 <= inp < node:
                raise LoaderError(
                    f"{where}: {kind} cell edge {i} feeds node {node} from {inp}; inputs of node "
                    f"{node} must be in 0-{node - 1}"
                )
            if i % 2 and inp == pairs[i - 1][1]:
                raise LoaderError(
                    f"{where}: {kind} cell node {node} takes input {inp} twice (edges {i - 1}, {i}); "
                    "an NB-301 node has two distinct inputs"
                )
        try:
            concat_list = [int(c) for c in concat]  # kept in order: DARTS concatenates as listed
        except (TypeError, ValueError):
            raise LoaderError(f"{where}: {kind}_concat {concat!r} is not a list of nodes") from None
        if (
            not concat_list
            or len(set(concat_list)) != len(concat_list)
            or any(not 2 <= c < 2 + NUM_NODES for c in concat_list)
        ):
            raise LoaderError(f"{where}: {kind}_concat {concat!r} must name distinct intermediate nodes 2-5")
        out[kind] = [list(p) for p in pairs]
        out[f"{kind}_concat"] = concat_list
    return out


def parse_genotype(text: str, *, where: str = "genotype") -> dict[str, Any]:
    """A DARTS genotype string ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3,
    4, 5], reduce=[...], reduce_concat=range(2, 6))`` -> config, without ``eval``.

    Only literals and ``range(a, b)`` are accepted; keyword or positional arguments in DARTS's
    field order (normal, normal_concat, reduce, reduce_concat).
    """
    hint = "expected Genotype(normal=[(op, input), ...], normal_concat=[...], reduce=..., reduce_concat=...)"
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise LoaderError(f"{where}: not a genotype string ({err.msg}); {hint}") from None
    if not (
        isinstance(tree, ast.Call)
        and isinstance(tree.func, (ast.Name, ast.Attribute))
        and (tree.func.id if isinstance(tree.func, ast.Name) else tree.func.attr) == "Genotype"
    ):
        raise LoaderError(f"{where}: not a Genotype(...) call; {hint}")
    fields = ("normal", "normal_concat", "reduce", "reduce_concat")
    values: dict[str, Any] = {}
    if len(tree.args) > len(fields):
        raise LoaderError(f"{where}: too many arguments; {hint}")
    for name, node in zip(fields, tree.args):
        values[name] = _literal(node, where, hint)
    for kw in tree.keywords:
        if kw.arg not in fields or kw.arg in values:
            raise LoaderError(f"{where}: unexpected or repeated argument {kw.arg!r}; {hint}")
        values[kw.arg] = _literal(kw.value, where, hint)
    if "normal" not in values or "reduce" not in values:
        raise LoaderError(f"{where}: normal and reduce cells are required; {hint}")
    return make_genotype(
        values["normal"], values["reduce"],
        values.get("normal_concat", DEFAULT_CONCAT), values.get("reduce_concat", DEFAULT_CONCAT),
        where=where,
    )  # fmt: skip


def _literal(node: ast.AST, where: str, hint: str) -> Any:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and 1 <= len(node.args) <= 3
    ):
        try:
            return list(range(*(int(ast.literal_eval(a)) for a in node.args)))
        except (ValueError, TypeError):
            raise LoaderError(f"{where}: bad range(...) argument; {hint}") from None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise LoaderError(
            f"{where}: only literals and range(a, b) are allowed in a genotype; {hint}"
        ) from None


def genotype_string(config: Mapping[str, Any]) -> str:
    """The DARTS ``Genotype(...)`` string of a config (inverse of :func:`parse_genotype`)."""

    def cell(kind: str) -> str:
        return "[" + ", ".join(f"({op!r}, {inp})" for op, inp in config[kind]) + "]"

    return (
        f"Genotype(normal={cell('normal')}, normal_concat={list(config['normal_concat'])}, "
        f"reduce={cell('reduce')}, reduce_concat={list(config['reduce_concat'])})"
    )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _op_name(index: Any) -> str:
    if not 0 <= _int(index) < len(OPS):
        raise IndexError(f"op index {index!r} outside 0-{len(OPS) - 1}")
    return OPS[index]


def from_compact(compact: Any, *, where: str = "compact") -> dict[str, Any]:
    """NASLib compact ``[[(input, op_idx) x 8], [(input, op_idx) x 8]]`` (or its string)."""
    try:
        value = ast.literal_eval(compact) if isinstance(compact, str) else compact
        normal, reduce = value
        cells = [[(_op_name(op), _int(inp)) for inp, op in cell] for cell in (normal, reduce)]
    except (ValueError, SyntaxError, TypeError, IndexError):
        raise LoaderError(
            f"{where}: {str(compact)[:80]!r} is not an NB-301 compact "
            "[[(input, op index 0-6) x 8], [... x 8]]"
        ) from None
    return make_genotype(cells[0], cells[1], where=where)


def to_compact(config: Mapping[str, Any]) -> str:
    """NASLib's compact string of a config (default concat only)."""
    cells = [[(int(inp), OPS.index(op)) for op, inp in config[k]] for k in ("normal", "reduce")]
    return str(cells)


def from_configspace(values: Mapping[str, Any], *, where: str = "config") -> dict[str, Any]:
    """NB-301's ConfigSpace dict (``NetworkSelectorDatasetInfo:darts:edge_normal_5`` ...) ->
    config; the mapping of ``nasbench301``'s ``get_gene_from_config`` (node 2 <- edges 0, 1;
    node k <- edge offset(k) + input for the two inputs named by ``inputs_node_<cell>_<k>``)."""
    cells = {}
    for kind in ("normal", "reduce"):
        pairs = []
        for node in range(2, 2 + NUM_NODES):
            if node == 2:
                inputs = [0, 1]
            else:
                key = f"{_CS}inputs_node_{kind}_{node}"
                try:
                    inputs = [int(v) for v in str(values[key]).split("_")]
                except KeyError:
                    raise LoaderError(f"{where}: missing {key!r}; not an NB-301 DARTS config") from None
                except ValueError:
                    raise LoaderError(f"{where}: {key} = {values[key]!r} is not 'a_b'") from None
                if len(inputs) != 2:
                    raise LoaderError(f"{where}: {key} = {values[key]!r} is not 'a_b'")
            for inp in inputs:
                key = f"{_CS}edge_{kind}_{_EDGE_OFFSET[node] + inp}"
                if key not in values:
                    raise LoaderError(f"{where}: missing {key!r} (input {inp} of node {node})")
                pairs.append((values[key], inp))
        cells[kind] = pairs
    return make_genotype(cells["normal"], cells["reduce"], where=where)


# ---------------------------------------------------------------------------- PyTorch model
def _op(name: str, c: int, stride: int, cache: ModuleCache | None, variant: str) -> nn.Module:
    affine = variant == "darts"
    key = ("nb301_op", name, c, stride, variant)
    if name == "skip_connect" and stride == 1:
        return cached(cache, key, nn.Identity)
    factories = {
        "max_pool_3x3": lambda: nn.MaxPool2d(3, stride, 1),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride, 1, count_include_pad=False),
        "skip_connect": lambda: FactorizedReduce(c, c, affine=affine),
        "sep_conv_3x3": lambda: SepConv(c, c, 3, stride, affine=affine),
        "sep_conv_5x5": lambda: SepConv(c, c, 5, stride, affine=affine),
        "dil_conv_3x3": lambda: DilConv(c, c, 3, stride, 2, affine=affine),
        "dil_conv_5x5": lambda: DilConv(c, c, 5, stride, 2, affine=affine),
    }
    factory = factories[name]
    if variant == "naslib" and "pool" in name:  # DARTS search-space ops: pool + BN(affine=False)
        pool = factory
        return cached(cache, key, lambda: nn.Sequential(pool(), nn.BatchNorm2d(c, affine=False)))
    return cached(cache, key, factory)


class DartsCell(nn.Module):
    """One DARTS cell (``model.py`` ``Cell``): preprocess both inputs, 4 nodes of 2 ops, concat."""

    def __init__(
        self,
        pairs: Sequence[Sequence[Any]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        cache: ModuleCache | None = None,
        variant: str = "darts",
    ) -> None:
        super().__init__()
        if reduction_prev:
            self.preprocess0 = cached(cache, ("nb301_fr", c_prev_prev, c),
                                      lambda: FactorizedReduce(c_prev_prev, c))  # fmt: skip
        else:
            self.preprocess0 = _relu_conv_bn(c_prev_prev, c, cache)
        self.preprocess1 = _relu_conv_bn(c_prev, c, cache)
        self.indices = [int(inp) for _, inp in pairs]
        self.concat = list(concat)
        self.ops = nn.ModuleList(
            _op(op, c, 2 if reduction and inp < 2 else 1, cache, variant) for op, inp in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self.indices) // 2):
            a, b = 2 * i, 2 * i + 1
            states.append(self.ops[a](states[self.indices[a]]) + self.ops[b](states[self.indices[b]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


def _relu_conv_bn(c_in: int, c_out: int, cache: ModuleCache | None) -> nn.Module:
    return cached(cache, ("nb301_relu_conv_bn", c_in, c_out),
                  lambda: ConvBlock(c_in, c_out, 1, order="acb"))  # fmt: skip


class NB301Network(nn.Module):
    """DARTS ``NetworkCIFAR`` (no auxiliary head, no drop-path) of one genotype config.

    ``variant="naslib"`` builds NASLib's rendering instead (cell-op BN without affine
    parameters, pooling followed by a non-affine BN, as DARTS's search network): only to
    reproduce NASLib's published params/FLOPs; the dataset uses ``"darts"``.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        init_channels: int = INIT_CHANNELS,
        layers: int = LAYERS,
        num_classes: int = NUM_CLASSES,
        cache: ModuleCache | None = None,
        variant: str = "darts",
    ) -> None:
        super().__init__()
        if variant not in ("darts", "naslib"):
            raise ValueError(f"variant must be 'darts' or 'naslib', got {variant!r}")
        c_curr = STEM_MULTIPLIER * init_channels
        self.stem = cached(cache, ("nb301_stem", c_curr),
                           lambda: ConvBlock(3, c_curr, 3, order="cb"))  # fmt: skip
        c_pp, c_p, c_curr = c_curr, c_curr, init_channels
        cells = []
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            kind = "reduce" if reduction else "normal"
            cells.append(
                DartsCell(
                    config[kind],
                    config[f"{kind}_concat"],
                    c_pp,
                    c_p,
                    c_curr,
                    reduction,
                    reduction_prev,
                    cache,
                    variant,
                )  # fmt: skip
            )
            reduction_prev = reduction
            c_pp, c_p = c_p, len(config[f"{kind}_concat"]) * c_curr
        self.cells = nn.ModuleList(cells)
        self.global_pooling = cached(cache, ("nb301_gap",), lambda: nn.AdaptiveAvgPool2d(1))
        self.classifier = cached(cache, ("nb301_classifier", c_p, num_classes),
                                 lambda: nn.Linear(c_p, num_classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))


def build_network(
    config: Mapping[str, Any], *, cache: ModuleCache | None = None, variant: str = "darts"
) -> nn.Module:
    """The NB-301 network (eval mode) of a config (``make_genotype`` output, optionally with
    ``init_channels`` / ``layers``; default NB-301's 32 / 8)."""
    cfg = make_genotype(
        config.get("normal"), config.get("reduce"),
        config.get("normal_concat", DEFAULT_CONCAT), config.get("reduce_concat", DEFAULT_CONCAT),
        where="config",
    )  # fmt: skip
    net = NB301Network(
        cfg,
        init_channels=int(config.get("init_channels", INIT_CHANNELS)),
        layers=int(config.get("layers", LAYERS)),
        cache=cache,
        variant=variant,
    )
    return net.eval() if cache is None else set_eval(net)


def auxiliary_head_params(c: int, num_classes: int = NUM_CLASSES) -> int:
    """Parameters of DARTS's CIFAR auxiliary head on ``c`` channels (counted by NB-301's
    ``model_parameters``, not part of our graph): 1x1 conv to 128 + BN, 2x2 conv to 768 + BN,
    linear."""
    return c * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * num_classes + num_classes


def auxiliary_head_channels(config: Mapping[str, Any]) -> int:
    """Input channels of the auxiliary head (the output of cell ``2 layers // 3``)."""
    layers = int(config.get("layers", LAYERS))
    c = int(config.get("init_channels", INIT_CHANNELS))
    if layers < 3:
        raise LoaderError(f"config with {layers} layers has no auxiliary head position")
    return len(config["reduce_concat"]) * c * 4  # cell 2*layers//3 is the second reduction


# ---------------------------------------------------------------------------- label files
def read_naslib_json(
    path: Path,
) -> Iterator[tuple[str, dict[str, Any], dict[str, float | None], int | None]]:
    """NASLib's ``zc_nasbench301.json`` -> ``(compact, config, labels, idx)`` per arch."""
    data = read_json(path)
    table = data.get("cifar10") if isinstance(data, Mapping) else None
    if not isinstance(table, Mapping):
        raise LoaderError(f"{path}: expected {{'cifar10': {{compact: {{...}}}}}} (NASLib zc json)")
    for row, (key, entry) in enumerate(table.items()):
        where = f"{path}, arch {row} ({key[:40]}...)"
        if not isinstance(entry, Mapping):
            raise LoaderError(f"{where}: entry is not an object")
        config = from_compact(key, where=where)
        val = upstream_number(entry.get("val_accuracy"))
        labels: dict[str, float | None] = {
            "val_acc_surrogate": None if val is None else val / 100.0,
            "params_upstream": upstream_number(entry.get("params")),
            "flops_upstream": upstream_number(entry.get("flops")),
        }
        labels.update({f"zc_{p}": upstream_number(entry.get(p)) for p in ZC_PROXIES})
        labels["accuracy"] = labels["val_acc_surrogate"]
        try:
            idx = int(entry["idx"]) if "idx" in entry else None
        except (TypeError, ValueError):
            raise LoaderError(f"{where}: idx {entry.get('idx')!r} is not an integer") from None
        yield key, config, labels, idx


def read_results(path: Path) -> Iterator[tuple[Path, dict[str, Any], dict[str, float | None]]]:
    """NB-301 training results (``results_*.json``; a file or a directory searched recursively)
    -> ``(file, config, labels)``. ``config`` carries the trained ``init_channels`` / ``layers``
    (NB-301's data set: 32 / 8)."""
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    if not files:
        raise LoaderError(f"{path}: no .json result files found")
    for file in files:
        rec = read_json(file)
        try:
            cs = rec["optimized_hyperparamater_config"]
            final = rec["info"][-1]
            if not isinstance(cs, Mapping) or not isinstance(final, Mapping):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise LoaderError(
                f"{file}: not an NB-301 training result (needs the object "
                "optimized_hyperparamater_config and an object info[-1]); see nasbench301's "
                "results_*.json"
            ) from None
        if cs.get(f"{_CS[: -len('darts:')]}network", "darts") != "darts":
            raise LoaderError(f"{file}: network {cs.get(_CS[:-6] + 'network')!r} is not darts")
        config = from_configspace(cs, where=str(file))
        try:
            config["init_channels"] = int(cs.get(f"{_CS}init_channels", INIT_CHANNELS))
            config["layers"] = int(cs.get(f"{_CS}layers", LAYERS))
        except (TypeError, ValueError):
            raise LoaderError(f"{file}: init_channels / layers are not integers") from None
        val, test = upstream_number(final.get("val_accuracy")), upstream_number(rec.get("test_accuracy"))
        params = upstream_number(final.get("model_parameters"))
        labels = {
            "val_acc_trained": None if val is None else val / 100.0,
            "test_acc_trained": None if test is None else test / 100.0,
            "train_time_trained": upstream_number(rec.get("runtime")),
            "epochs_trained": upstream_number(final.get("epochs")),
            "params_upstream": None if params is None else params / 1e6,
        }
        labels["accuracy"] = labels["val_acc_trained"]
        yield file, config, labels


def read_genotype_file(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """A text file with one DARTS genotype string per line (blank lines and ``#`` comments
    skipped) -> ``(line number, config)``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LoaderError(f"{path}: cannot read the genotype file ({err})") from None
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield n, parse_genotype(text, where=f"{path}, line {n}")


# ---------------------------------------------------------------------------- the family
LABEL_COLUMNS: dict[str, str] = {
    "val_acc_surrogate": "NB-301 surrogate's predicted validation accuracy (fraction), as "
    "published in NASLib zc_nasbench301.json or computed with `surrogate_dir=`",
    "val_acc_trained": "NB-301 training result: final validation accuracy (fraction)",
    "test_acc_trained": "NB-301 training result: test accuracy (fraction)",
    "train_time_trained": "NB-301 training result: runtime in seconds",
    "epochs_trained": "NB-301 training result: epochs trained",
    "params_upstream": "parameters in millions: NASLib `params` (its non-affine-op network) or "
    "NB-301 `model_parameters` (trained network incl. auxiliary head)",
    "flops_upstream": "NASLib `flops` in MFLOPs (tensorwatch rules, NASLib's network)",
    **GENNAPE_LABEL_COLUMNS,
    **{f"zc_{p}": f"zero-cost proxy {p} (NASLib zc_nasbench301.json, cifar10)" for p in ZC_PROXIES},
}
TAG_COLUMNS: dict[str, tuple[str, str]] = {
    "label_source": (
        "string",
        "which upstream label feeds `accuracy`: val_acc_surrogate, val_acc_trained, acc_gennape or none",
    ),
    "genotype": ("string", "the DARTS Genotype(...) string"),
    "naslib_idx": ("int64", "NASLib's `idx` of the arch (zc_nasbench301.json)"),
}


class NB301(Family):
    """NAS-Bench-301 (DARTS space) on CIFAR-10, surrogate validation accuracy as the label.

    One source per instance: NASLib's zc json (default, from the mirror), ``results=PATH``
    (training-result JSON file or directory), ``genotypes=PATH`` (text file of genotype strings),
    ``gennape_cache=PATH``. ``surrogate_dir=PATH`` (NB-301's model files, needs the
    ``nasbench301`` package) fills ``val_acc_surrogate`` where it is missing.
    """

    name = "nb301"
    dataset = "cifar10"
    input_shape = (3, 32, 32)
    sources = (NASLIB_JSON,)
    label_columns = LABEL_COLUMNS
    tag_columns = TAG_COLUMNS

    def __init__(
        self,
        *,
        results: str | Path | None = None,
        genotypes: str | Path | None = None,
        gennape_cache: str | Path | None = None,
        surrogate_dir: str | Path | None = None,
    ) -> None:
        chosen = [results, genotypes, gennape_cache]
        if sum(c is not None for c in chosen) > 1:
            raise LoaderError("NB301(): give at most one of results=, genotypes=, gennape_cache=")
        self.results = Path(results) if results is not None else None
        self.genotypes = Path(genotypes) if genotypes is not None else None
        self.gennape_cache = Path(gennape_cache) if gennape_cache is not None else None
        self.surrogate_dir = Path(surrogate_dir) if surrogate_dir is not None else None
        if any(c is not None for c in chosen):
            self.sources = ()

    def iter_records(self, paths: Mapping[str, Path], *, limit: int | None = None) -> Iterator[ArchRecord]:
        records = itertools.islice(self._records(paths), limit)
        if self.surrogate_dir is None:
            return records
        return _with_surrogate(records, self.surrogate_dir)

    def _records(self, paths: Mapping[str, Path]) -> Iterator[ArchRecord]:
        """Each network once: a genotype seen again (same cells up to the order of a node's two
        inputs, same size) is skipped, the first occurrence kept (as NB-101 keeps one per hash)."""
        seen: set[str] = set()
        for record in self._all_records(paths):
            key = canonical_key(record.config)
            if key not in seen:
                seen.add(key)
                yield record

    def _all_records(self, paths: Mapping[str, Path]) -> Iterator[ArchRecord]:
        if self.results is not None:
            for _file, config, labels in read_results(self.results):
                yield _record(config, labels, "val_acc_trained")
        elif self.genotypes is not None:
            for _line, config in read_genotype_file(self.genotypes):
                yield _record(config, {}, "none")
        elif self.gennape_cache is not None:
            yield from read_gennape_cache(self.gennape_cache)
        else:
            try:
                path = paths[NASLIB_JSON]
            except KeyError:
                raise LoaderError(
                    f"nb301: source {NASLIB_JSON!r} not given; run `cgbench download nb301` or pass a mirror"
                ) from None
            for _key, config, labels, idx in read_naslib_json(path):
                rec = _record(config, labels, "val_acc_surrogate")
                if idx is not None:
                    rec.tags["naslib_idx"] = idx
                yield rec

    def build_model(self, config: Any, *, cache: ModuleCache | None = None) -> nn.Module:
        if not isinstance(config, Mapping):
            raise LoaderError(f"nb301: config {config!r} is not a genotype dict")
        return build_network(config, cache=cache)


def canonical_key(config: Mapping[str, Any]) -> str:
    """One string per network: each node's two (op, input) pairs sorted, concat lists, size."""

    def cell(kind: str) -> list:
        pairs = [tuple(p) for p in config[kind]]
        return [sorted(pairs[i : i + 2]) for i in range(0, len(pairs), 2)]

    size = (int(config.get("init_channels", INIT_CHANNELS)), int(config.get("layers", LAYERS)))
    return repr(
        (cell("normal"), list(config["normal_concat"]), cell("reduce"), list(config["reduce_concat"]), size)
    )


def arch_id(config: Mapping[str, Any]) -> str:
    """NASLib's compact string for default cells at NB-301's size; else the genotype string,
    suffixed ``@C<init_channels>L<layers>`` when the size differs."""
    size = (int(config.get("init_channels", INIT_CHANNELS)), int(config.get("layers", LAYERS)))
    default = all(list(config[f"{k}_concat"]) == list(DEFAULT_CONCAT) for k in ("normal", "reduce"))
    base = to_compact(config) if default else genotype_string(config)
    return base if size == (INIT_CHANNELS, LAYERS) else f"{base}@C{size[0]}L{size[1]}"


def _record(config: dict[str, Any], labels: dict[str, float | None], label_source: str) -> ArchRecord:
    labels = dict(labels)
    labels.setdefault("accuracy", None)
    if labels["accuracy"] is None:
        label_source = "none"
    return ArchRecord(
        arch_id=arch_id(config),
        config=config,
        labels=labels,
        tags={"label_source": label_source, "genotype": genotype_string(config)},
    )


# ---------------------------------------------------------------------------- GENNAPE / surrogate
def read_gennape_cache(path: Path) -> Iterator[ArchRecord]:
    """GENNAPE's ``gpi_nb301_comp_graph_cache.pkl`` (list of dicts; ``original config`` = a DARTS
    ``Genotype`` namedtuple, concat lists or ``range`` objects) through the restricted unpickler
    of :mod:`cgbench.loaders.gennape`, admitting GENNAPE's ``Genotype`` class as well. GENNAPE's
    own graph is not used (its TF DARTS model has 16 channels and 20 cells); the network is
    rebuilt from ``original config`` at NB-301's size."""
    from cgbench.loaders.gennape import iter_gennape_cache

    for row, entry in enumerate(iter_gennape_cache(path, GENNAPE_GENOTYPE_GLOBALS)):
        where = f"{path}, entry {row}"
        geno = entry.get("original config")
        try:
            normal, normal_concat, reduce, reduce_concat = (
                (geno["normal"], geno["normal_concat"], geno["reduce"], geno["reduce_concat"])
                if isinstance(geno, Mapping)
                else tuple(geno)
            )
        except (TypeError, ValueError, KeyError):
            raise LoaderError(
                f"{where}: `original config` {str(geno)[:80]!r} is not a DARTS Genotype; is this "
                "GENNAPE's NB-301 cache?"
            ) from None
        config = make_genotype(normal, reduce, normal_concat, reduce_concat, where=where)
        acc = upstream_number(entry.get("acc"))
        if acc is not None and acc > 1.0:
            acc /= 100.0
        labels = {
            "acc_gennape": acc,
            "accuracy": acc,
            "flops_gennape": upstream_number(entry.get("flops")),
            "params_gennape": upstream_number(entry.get("n_params")),
        }
        yield _record(config, labels, "acc_gennape")


_GennapeGenotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
# Where GENNAPE's pickles may name the DARTS Genotype namedtuple (model_src/darts/model_darts.py
# defines it; DARTS's own genotypes.py too) and the ``range`` DARTS uses for concat.
GENNAPE_GENOTYPE_GLOBALS: dict[tuple[str, str], Any] = {
    ("model_src.darts.model_darts", "Genotype"): _GennapeGenotype,
    ("model_src.darts.genotypes", "Genotype"): _GennapeGenotype,
    ("genotypes", "Genotype"): _GennapeGenotype,
    ("builtins", "range"): range,
}


def load_surrogate(model_dir: Path) -> Any:
    """NB-301's performance surrogate from its model files (``nasbench301.load_ensemble``)."""
    try:
        import nasbench301
    except ImportError:
        raise LoaderError(
            "querying the NB-301 surrogate needs the `nasbench301` package (pip install "
            "nasbench301, with its own dependencies) and its model files "
            "(nb_models_1.0: xgb_v1.0 / gnn_gin_v1.0); or use the published labels of the "
            "default source"
        ) from None
    if not Path(model_dir).is_dir():
        raise LoaderError(f"{model_dir}: NB-301 surrogate model directory not found")
    try:
        return nasbench301.load_ensemble(str(model_dir))
    except Exception as err:  # noqa: BLE001 - third-party loader, any failure means "bad files"
        raise LoaderError(
            f"{model_dir}: could not load the NB-301 surrogate ({type(err).__name__}: {err}); "
            "point surrogate_dir at an unpacked model directory such as nb_models/xgb_v1.0"
        ) from None


def _with_surrogate(records: Iterator[ArchRecord], model_dir: Path) -> Iterator[ArchRecord]:
    model = load_surrogate(model_dir)
    for rec in records:
        if rec.labels.get("val_acc_surrogate") is None:
            c = rec.config
            geno = _GennapeGenotype(
                [tuple(p) for p in c["normal"]], list(c["normal_concat"]),
                [tuple(p) for p in c["reduce"]], list(c["reduce_concat"]),
            )  # fmt: skip
            pred = float(model.predict(config=geno, representation="genotype", with_noise=False))
            rec.labels["val_acc_surrogate"] = pred / 100.0
            if rec.labels.get("accuracy") is None:
                rec.labels["accuracy"] = pred / 100.0
                rec.tags["label_source"] = "val_acc_surrogate"
        yield rec
