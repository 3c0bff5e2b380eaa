"""Extract the computation graph of any ``torch.nn.Module``.

The module's ``forward`` runs on :class:`Value` stand-ins instead of tensors. A ``Value`` carries
a shape and the CG node that produced it, and takes part in PyTorch's ``__torch_function__``
protocol, so every torch function the network calls (``F.conv2d``, ``torch.cat``, ``x + y``,
``x.view`` ...) reaches :meth:`_Tracer.call_function`, which adds one node, computes the output
shape with the op's own rule (no kernel runs, no memory is allocated) and records the data flow.
Shapes are checked as torch checks them: a mismatch raises :class:`ShapeError` naming the module
path and both shapes. An op without a rule raises :class:`UnsupportedOpError`.

Module calls are intercepted too (``nn.Module.__call__`` is patched for the duration of a trace):
- a module whose class declares ``cg_op = "<op>"`` (or ``nn.Identity`` / ``nn.Dropout``) becomes
  one node of that op;
- forward pre-hooks and forward hooks (the module's own and the global ones) run as torch runs
  them, so a hook that changes an input or an output changes the graph; backward hooks do not
  affect the forward pass and are not run;
- any other module runs its ``forward`` on the stand-ins, every call: a user's model is traced as
  it runs, whatever Python state its ``forward`` reads.

Memoisation only skips work, it never changes a graph. It is opt-in: a module whose graph is
determined by its structure and input shapes says so, by the class attribute ``cg_pure = True``
or the instance flag ``cg_shared = True`` (set by ``loaders.base.ModuleCache`` / ``shared()`` on
the sub-modules a builder shares). A marked module's later calls on the same input signature
replay the recorded sub-graph, keyed also on its sub-module tree (every sub-module and parameter
by identity, their training flags): replacing a child re-traces it. A module with hooks anywhere
below it is never replayed. A :class:`TraceCache` shared across extractions keeps the templates;
with builders that share identical sub-module instances extraction becomes sub-millisecond.

Parameters are counted as torch counts them: each parameter tensor once however often it is
used (weight tying), recorded at trace time as ``ComputationGraph.num_params``. A ``cg_shared``
module is a builder's sharing device standing for a separate copy at every call, so its
parameters count at every call (the graph is that of the untied network).
"""

from __future__ import annotations

import math
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cgbench.cg.graph import ComputationGraph
from cgbench.cg.ops import OP_INDEX, op_index


class UnsupportedOpError(TypeError):
    """A torch operator or module cgbench cannot represent in a computation graph."""


class ShapeError(ValueError):
    """A tensor shape that torch would reject (the message names the module path and shapes)."""


class Value:
    """A stand-in for a tensor during tracing: a shape and the node that produced it."""

    __slots__ = ("_shape", "node")

    def __init__(self, shape: tuple[int, ...], node: int) -> None:
        self._shape = shape
        self.node = node

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return _active_tracer().call_function(func, args, kwargs or {})

    # -- tensor-like metadata, answered without dispatch
    @property
    def shape(self) -> torch.Size:
        return torch.Size(self._shape)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def size(self, dim: int | None = None):
        return torch.Size(self._shape) if dim is None else self._shape[dim]

    def numel(self) -> int:
        return math.prod(self._shape)

    def __len__(self) -> int:
        return self._shape[0]

    def __iter__(self):
        return iter([self[i] for i in range(self._shape[0])])

    dtype = torch.float32
    device = torch.device("meta")
    requires_grad = False
    is_cuda = False

    def __repr__(self) -> str:
        return f"Value(shape={self._shape}, node={self.node})"

    # -- every other tensor method is routed through the tracer as ``torch.Tensor.<name>``
    def __getattr__(self, name: str):
        method = getattr(torch.Tensor, name, None)
        if method is None or not callable(method):
            raise AttributeError(f"'Value' (a traced tensor) has no attribute {name!r}")
        return lambda *args, **kwargs: _active_tracer().call_function(method, (self, *args), kwargs)


def _route(name: str) -> Callable:
    method = getattr(torch.Tensor, name)

    def dunder(self, *args):
        return _active_tracer().call_function(method, (self, *args), {})

    dunder.__name__ = name
    return dunder


for _name in (
    "__add__", "__radd__", "__iadd__", "__mul__", "__rmul__", "__imul__", "__sub__", "__rsub__",
    "__isub__", "__truediv__", "__rtruediv__", "__matmul__", "__rmatmul__", "__getitem__",
    "__neg__",
):  # fmt: skip
    setattr(Value, _name, _route(_name))


class TraceCache:
    """Sub-graph templates of traced module calls, reusable across extractions.

    Templates are kept per module instance (the cache holds the module, so its ``id`` stays
    valid) for at most ``max_modules`` modules, least recently used evicted first together with
    all their templates: memory stays bounded over any number of extractions. Use one cache per
    build together with a builder that shares identical sub-modules (``loaders.base.ModuleCache``).
    """

    def __init__(self, max_modules: int = 4096) -> None:
        self.max_modules = max_modules
        self._modules: OrderedDict[int, tuple[nn.Module, dict[tuple, _Template | None]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def templates_for(self, module: nn.Module) -> dict[tuple, _Template | None]:
        """The (mutable) template table of ``module``, created on first use."""
        entry = self._modules.get(id(module))
        if entry is None:
            entry = (module, {})
            self._modules[id(module)] = entry
            if len(self._modules) > self.max_modules:
                self._modules.popitem(last=False)
        else:
            self._modules.move_to_end(id(module))
        return entry[1]

    def __len__(self) -> int:
        return sum(len(t) for _, t in self._modules.values())


class _Template:
    __slots__ = (
        "ops", "res", "weight", "bias", "internal_edges", "input_edges", "outputs",
        "params", "nested_params", "keep",
    )  # fmt: skip

    def __init__(self, ops, res, weight, bias, internal_edges, input_edges, outputs, params, nested, keep):
        self.ops = ops
        self.res = res
        self.weight = weight
        self.bias = bias
        self.internal_edges = internal_edges  # [(src_rel, dst_rel)]
        self.input_edges = input_edges  # [(arg_position, dst_rel)]
        self.outputs = outputs  # Value spec: ("node", rel, shape) | ("arg", pos) | tuple of specs
        self.params = params  # parameters used in the call's own counting scope (deduplicated)
        self.nested_params = nested  # parameter count added in nested (shared) scopes
        self.keep = keep  # the sub-modules and parameters whose identities are in the key


_LOCK = threading.RLock()
_ACTIVE: _Tracer | None = None
_ORIGINAL_CALL = nn.Module.__call__
_MISSING = object()


def _active_tracer() -> _Tracer:
    if _ACTIVE is None:
        raise RuntimeError("a cgbench Value was used outside extract_cg()")
    return _ACTIVE


def _patched_call(module: nn.Module, *args, **kwargs):
    tracer = _ACTIVE
    if tracer is None or threading.get_ident() != tracer.thread:  # other threads run normally
        return _ORIGINAL_CALL(module, *args, **kwargs)
    return tracer.call_module(module, args, kwargs)


# Modules that become a single node; others declare ``cg_op`` on their class.
LEAF_MODULES: dict[type, str] = {
    nn.Identity: "identity",
    nn.Dropout: "identity",
    nn.Dropout2d: "identity",
    nn.AlphaDropout: "identity",
}


def _chw_last(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) for ops acting on the last dimension (linear, layernorm): C = the last size,
    H and W the sizes between batch and C ((N, L, D) -> (D, L, 1))."""
    middle = shape[1:-1]
    if len(middle) == 2:
        return shape[-1], middle[0], middle[1]
    return shape[-1], math.prod(middle), 1


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an N-first shape: (N,C,H,W) -> (C,H,W); (N,C,L) -> (C,L,1); (N,F) -> (F,1,1)."""
    if len(shape) >= 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 2:
        return shape[1], 1, 1
    return (shape[0] if shape else 1), 1, 1


def _global_hooks() -> tuple[dict, dict, dict]:
    """torch's global forward pre-hooks, forward hooks and the ids of those taking kwargs."""
    from torch.nn.modules import module as torch_module

    return (
        torch_module._global_forward_pre_hooks,
        torch_module._global_forward_hooks,
        getattr(torch_module, "_global_forward_hooks_with_kwargs", {}),
    )


def _memoisable(module: nn.Module) -> bool:
    """Marked as having a graph determined by its structure (``cg_shared`` / ``cg_pure``)."""
    d = module.__dict__
    return bool(d.get("cg_shared") or d.get("cg_pure") or getattr(type(module), "cg_pure", False))


def _structure(module: nn.Module) -> tuple[tuple, list] | None:
    """The identity of ``module``'s sub-module tree: (key, the objects the key names), or None
    when a module in it has forward hooks (a replay would skip them). The key lists every
    sub-module and parameter by identity with the tree's shape and the training flags; the
    objects are kept alive with the template, so their ids are never reused while it exists."""
    key: list = []
    keep: list = []
    stack = [module]
    while stack:
        m = stack.pop()
        if m is None:
            key.append(None)
            continue
        if m._forward_hooks or m._forward_pre_hooks:
            return None
        keep.append(m)
        key.append(id(m))
        key.append(m.training)
        children = m._modules
        if children:
            key.append(len(children))
            stack.extend(children.values())
        params = m._parameters
        if params:
            values = [p for p in params.values() if p is not None]
            keep.extend(values)
            key.append(tuple(map(id, values)))
    return tuple(key), keep


class _Tracer:
    def __init__(self, root: nn.Module, cache: TraceCache | None, memo: bool = True) -> None:
        self.root = root
        self.cache = cache if cache is not None else TraceCache()
        pre, post, post_kw = _global_hooks()
        self.global_pre, self.global_post, self.global_post_kw = pre, post, post_kw
        self.memo = memo and not (pre or post)  # a global hook applies to every call
        self.thread = threading.get_ident()
        self.ops: list[int] = []
        self.res: list[tuple[int, ...]] = []
        self.weight: list[tuple[int, ...]] = []
        self.bias: list[bool] = []
        self.edges: list[tuple[int, int]] = []
        self.stack: list[nn.Module] = []
        # parameter counting: each tensor once per scope; a cg_shared call opens a fresh scope
        self.num_params = 0
        self.scope = 0
        self._scopes = 0
        self._seen: set[tuple[int, int]] = set()
        self._log: list[tuple[int, Any, int]] = []  # (scope, parameter or None, count added)
        self._structures: dict[int, Any] = {}

    # ------------------------------------------------------------------ parameters
    def use_params(self, params) -> None:
        """Count parameter tensors used in the current scope (each tensor once)."""
        for p in params:
            if p is None:
                continue
            key = (self.scope, id(p))
            added = 0
            if key not in self._seen:
                self._seen.add(key)
                added = p.numel()
                self.num_params += added
            self._log.append((self.scope, p, added))

    # ------------------------------------------------------------------ node emission
    def add_node(
        self,
        op: str,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        inputs: Sequence[Value],
        weight: tuple[int, int, int, int] = (0, 0, 0, 0),
        bias: bool = False,
        last_dim: bool = False,
    ) -> int:
        layout = _chw_last if last_dim else _chw
        c_in, h_in, w_in = layout(in_shape)
        c_out, h_out, w_out = layout(out_shape)
        node = len(self.ops)
        self.ops.append(OP_INDEX[op])
        self.res.append((h_in, h_out, w_in, w_out, c_in, c_out))
        self.weight.append(weight)
        self.bias.append(bias)
        seen = set()
        for v in inputs:
            if v.node not in seen:
                seen.add(v.node)
                self.edges.append((v.node, node))
        return node

    def emit(self, op: str, inputs: Sequence[Value], out_shape: tuple[int, ...], **kw) -> Value:
        return Value(out_shape, self.add_node(op, inputs[0]._shape, out_shape, inputs, **kw))

    # ------------------------------------------------------------------ functions
    def call_function(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        rule = _RULES.get(func)
        if rule is None:
            raise UnsupportedOpError(
                f"unsupported torch op {_func_name(func)} in module {self.module_path()}: "
                "cgbench has no computation-graph rule for it; add one in cgbench.cg.trace._RULES "
                "or wrap the code in a module that declares `cg_op`"
            )
        return rule(self, args, kwargs)

    def module_path(self) -> str:
        if not self.stack:
            return "<root>"
        names = {id(m): name for name, m in self.root.named_modules()}
        path = [names.get(id(m), "?") or "<root>" for m in self.stack]
        leaf = self.stack[-1]
        return f"{path[-1]!r} ({type(leaf).__name__})"

    def shape_error(self, message: str) -> ShapeError:
        return ShapeError(f"shape mismatch in module {self.module_path()}: {message}")

    # ------------------------------------------------------------------ modules
    def call_module(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        self.stack.append(module)
        outer = self.scope
        if module.__dict__.get("cg_shared"):  # a separate copy at every call: a fresh scope
            self._scopes += 1
            self.scope = self._scopes
        try:
            pre = module._forward_pre_hooks
            post = module._forward_hooks
            if not (pre or post or self.global_pre or self.global_post):
                return self._call(module, args, kwargs)
            for hook_id, hook in (*self.global_pre.items(), *pre.items()):
                if hook_id in module._forward_pre_hooks_with_kwargs:
                    result = hook(module, args, kwargs)
                    if result is not None:
                        if not (isinstance(result, tuple) and len(result) == 2):
                            raise RuntimeError(
                                "forward pre-hook must return None or a tuple of (new_args, "
                                f"new_kwargs), but got {result}."
                            )
                        args, kwargs = result
                else:
                    result = hook(module, args)
                    if result is not None:
                        args = result if isinstance(result, tuple) else (result,)
            out = self._call(module, args, kwargs)
            for hook_id, hook in (*self.global_post.items(), *post.items()):
                if hook_id in module._forward_hooks_with_kwargs or hook_id in self.global_post_kw:
                    result = hook(module, args, kwargs, out)
                else:
                    result = hook(module, args, out)
                if result is not None:
                    out = result
            return out
        finally:
            self.scope = outer
            self.stack.pop()

    def _call(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        leaf_op = getattr(type(module), "cg_op", None) or LEAF_MODULES.get(type(module))
        if leaf_op is not None:
            self.use_params(module.parameters())
            x = _first_value(args, kwargs)
            shape_fn = getattr(module, "cg_output_shape", None)
            out_shape = tuple(shape_fn(x._shape)) if shape_fn is not None else x._shape
            return self.emit(leaf_op, [x], out_shape)
        if not self.memo or module is self.root or not _memoisable(module):
            self.use_params(module._parameters.values())
            return module.forward(*args, **kwargs)
        key = _memo_key(module, args, kwargs)
        structure = self._structures.get(id(module), _MISSING)
        if structure is _MISSING:
            structure = self._structures[id(module)] = _structure(module)
        if key is None or structure is None:
            self.use_params(module._parameters.values())
            return module.forward(*args, **kwargs)
        key = (key, structure[0])
        templates = self.cache.templates_for(module)
        template = templates.get(key, _MISSING)
        if template is not _MISSING:
            if template is not None:
                self.cache.hits += 1
                return self._replay(template, args, kwargs)
            self.use_params(module._parameters.values())
            return module.forward(*args, **kwargs)
        self.cache.misses += 1
        arg_values = _values_in(args, kwargs)
        arg_nodes = [v.node for v in arg_values]
        start, edge_start, log_start = len(self.ops), len(self.edges), len(self._log)
        self.use_params(module._parameters.values())
        out = module.forward(*args, **kwargs)
        templates[key] = self._record(start, edge_start, log_start, arg_values, arg_nodes, out, structure[1])
        return out

    def _record(self, start, edge_start, log_start, arg_values, arg_nodes, out, keep) -> _Template | None:
        if any(v.node != n for v, n in zip(arg_values, arg_nodes)):
            return None  # an input was modified in place: replay could not reproduce it
        position = {}
        for i, n in enumerate(arg_nodes):
            position.setdefault(n, i)
        internal, inputs = [], []
        for s, d in self.edges[edge_start:]:
            if s >= start:
                internal.append((s - start, d - start))
            elif s in position:
                inputs.append((position[s], d - start))
            else:
                return None  # reads a tensor that is not an argument (closure, state)
        outputs = _output_spec(out, start, position)
        if outputs is None:
            return None
        params: dict[int, Any] = {}
        nested = 0
        for scope, p, added in self._log[log_start:]:
            if scope == self.scope and p is not None:
                params.setdefault(id(p), p)
            elif scope != self.scope:
                nested += added
        return _Template(
            self.ops[start:], self.res[start:], self.weight[start:], self.bias[start:],
            internal, inputs, outputs, tuple(params.values()), nested, keep,
        )  # fmt: skip

    def _replay(self, t: _Template, args: tuple, kwargs: dict) -> Any:
        arg_nodes = [v.node for v in _values_in(args, kwargs)]
        offset = len(self.ops)
        self.ops.extend(t.ops)
        self.res.extend(t.res)
        self.weight.extend(t.weight)
        self.bias.extend(t.bias)
        self.edges.extend((arg_nodes[p], d + offset) for p, d in t.input_edges)
        self.edges.extend((s + offset, d + offset) for s, d in t.internal_edges)
        self.use_params(t.params)
        if t.nested_params:
            self.num_params += t.nested_params
            self._log.append((-1, None, t.nested_params))
        values = _values_in(args, kwargs)
        return _build_output(t.outputs, offset, values)


def _func_name(func: Callable) -> str:
    qual = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    if qual.startswith("Tensor.") or qual.startswith("_TensorBase."):
        return "torch.Tensor." + qual.split(".", 1)[1]
    module = getattr(func, "__module__", None)
    return f"{module}.{qual}" if module else f"torch.{qual}"


# ---------------------------------------------------------------------- memo helpers
_SCALARS = (int, float, str, bool, type(None))


def _sig(obj: Any) -> Any:
    if isinstance(obj, Value):
        return obj._shape
    if isinstance(obj, _SCALARS):
        return (type(obj).__name__, obj)
    if isinstance(obj, (tuple, list)):
        parts = tuple(_sig(o) for o in obj)
        return None if any(p is None for p in parts) else (type(obj).__name__, parts)
    return None


def _memo_key(module: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
    sig = _sig(args)
    if sig is None:
        return None
    if kwargs:
        ksig = _sig(tuple(sorted(kwargs.items())))
        if ksig is None:
            return None
        sig = (sig, ksig)
    values = _values_in(args, kwargs)
    if len(values) > 1:  # which arguments alias the same tensor changes the wiring
        first: dict[int, int] = {}
        sig = (sig, tuple(first.setdefault(v.node, i) for i, v in enumerate(values)))
    return (module.training, sig)


def _values_in(args: tuple, kwargs: dict) -> list[Value]:
    out: list[Value] = []

    def walk(o):
        if isinstance(o, Value):
            out.append(o)
        elif isinstance(o, (tuple, list)):
            for x in o:
                walk(x)

    walk(args)
    if kwargs:
        for k in sorted(kwargs):
            walk(kwargs[k])
    return out


def _first_value(args: tuple, kwargs: dict) -> Value:
    values = _values_in(args, kwargs)
    if not values:
        raise UnsupportedOpError("a module was called without any tensor input")
    return values[0]


def _output_spec(out: Any, start: int, position: dict[int, int]) -> Any:
    if isinstance(out, Value):
        if out.node >= start:
            return ("node", out.node - start, out._shape)
        if out.node in position:
            return ("arg", position[out.node], out._shape)
        return None
    if isinstance(out, (tuple, list)):
        parts = tuple(_output_spec(o, start, position) for o in out)
        if any(p is None for p in parts):
            return None
        return ("seq", type(out), parts)
    return None


def _build_output(spec: Any, offset: int, values: list[Value]) -> Any:
    kind = spec[0]
    if kind == "node":
        return Value(spec[2], spec[1] + offset)
    if kind == "arg":  # the module returned (a view of) an argument
        value = values[spec[1]]
        return value if value._shape == spec[2] else Value(spec[2], value.node)
    cls, items = spec[1], [_build_output(s, offset, values) for s in spec[2]]
    return cls(*items) if hasattr(cls, "_fields") else cls(items)  # namedtuple or tuple/list


# ---------------------------------------------------------------------- op rules
def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _elementwise(op: str, inplace_pos: int | None = None, always_inplace: bool = False):
    def rule(tr: _Tracer, args, kwargs):
        x = args[0]
        inplace = always_inplace or (
            inplace_pos is not None and bool(_arg(args, kwargs, inplace_pos, "inplace", False))
        )
        node = tr.add_node(op, x._shape, x._shape, [x])
        if inplace:
            x.node = node
            return x
        return Value(x._shape, node)

    return rule


def _hardtanh(tr: _Tracer, args, kwargs):
    lo = float(_arg(args, kwargs, 1, "min_val", -1.0))
    hi = float(_arg(args, kwargs, 2, "max_val", 1.0))
    if (lo, hi) != (0.0, 6.0):
        raise UnsupportedOpError(
            f"hardtanh({lo}, {hi}) in module {tr.module_path()}: only ReLU6 (0, 6) is in the vocabulary"
        )
    return _elementwise("relu6", inplace_pos=3)(tr, args, kwargs)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x != y and 1 not in (x, y):
            raise _active_tracer().shape_error(f"shapes {a} and {b} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def _shape_of(obj: Any) -> tuple[int, ...] | None:
    if isinstance(obj, Value):
        return obj._shape
    if isinstance(obj, torch.Tensor):
        return tuple(obj.shape)
    return None


def _binary(op: str, inplace: bool = False):
    def rule(tr: _Tracer, args, kwargs):
        a, b = args[0], _arg(args, kwargs, 1, "other")
        values = [v for v in (a, b) if isinstance(v, Value)]
        shapes = [s for s in (_shape_of(a), _shape_of(b)) if s is not None]
        out_shape = shapes[0] if len(shapes) == 1 else _broadcast(shapes[0], shapes[1])
        first = values[0]
        node = tr.add_node(op, first._shape, out_shape, values)
        if inplace and isinstance(a, Value):
            a.node, a._shape = node, out_shape
            return a
        return Value(out_shape, node)

    return rule


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv2d(tr: _Tracer, args, kwargs):
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    b = _arg(args, kwargs, 2, "bias")
    stride = _pair(_arg(args, kwargs, 3, "stride", 1))
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    if isinstance(w, Value):
        raise UnsupportedOpError(f"conv2d with a computed weight in module {tr.module_path()}")
    c_out, c_in_g, k1, k2 = (int(v) for v in w.shape)
    wshape = tuple(int(v) for v in w.shape)
    if len(x._shape) != 4:
        hint = (
            "; input_shape is (C, H, W), without the batch dimension"
            if len(x._shape) == 5 and x._shape[1] == 1 else ""
        )  # fmt: skip
        raise tr.shape_error(
            f"conv2d expects a 4-D input (N, C, H, W), got {x._shape}, weight {wshape}{hint}"
        )
    n, c_in, h, wd = x._shape
    if c_in != c_in_g * groups:
        raise tr.shape_error(
            f"conv2d input {x._shape} has {c_in} channels, weight {wshape} (groups={groups}) "
            f"expects {c_in_g * groups}"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0)
        else:  # "same" (stride 1): total padding d*(k-1), output = input
            pads = None
    else:
        pads = _pair(padding)
    if pads is None:
        h_out, w_out = h, wd
    else:
        h_out = _conv_out(h, k1, stride[0], pads[0], dilation[0])
        w_out = _conv_out(wd, k2, stride[1], pads[1], dilation[1])
    if h_out < 1 or w_out < 1:
        raise tr.shape_error(
            f"conv2d input {x._shape} is too small for weight {wshape} (stride {stride}, padding "
            f"{padding}, dilation {dilation}): output H_out={h_out}, W_out={w_out}"
        )
    if groups > 1 and groups == c_in and c_in_g == 1:
        op, weight = "depthwise", (c_in, c_out // c_in, k1, k2)
    else:
        op, weight = "conv", (c_in_g, c_out, k1, k2)
    return tr.emit(op, [x], (n, c_out, h_out, w_out), weight=weight, bias=b is not None)


def _linear(tr: _Tracer, args, kwargs):
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    b = _arg(args, kwargs, 2, "bias")
    out_f, in_f = (int(v) for v in w.shape)
    if x._shape[-1] != in_f:
        raise tr.shape_error(
            f"linear input {x._shape} has {x._shape[-1]} features, weight {tuple(w.shape)} expects {in_f}"
        )
    out_shape = x._shape[:-1] + (out_f,)
    return tr.emit("matmul", [x], out_shape, weight=(in_f, out_f, 0, 0), bias=b is not None, last_dim=True)


def _batch_norm(tr: _Tracer, args, kwargs):
    x = args[0]
    w = _arg(args, kwargs, 3, "weight")
    stats = [t for t in (_arg(args, kwargs, 1, "running_mean"), w) if t is not None]
    if len(x._shape) < 2:
        raise tr.shape_error(f"batch_norm expects at least 2-D input (N, C, ...), got {x._shape}")
    if stats and stats[0].numel() != x._shape[1]:
        raise tr.shape_error(
            f"batch_norm input {x._shape} has {x._shape[1]} channels, the module {stats[0].numel()}"
        )
    return tr.emit("batchnorm", [x], x._shape, bias=w is not None)


def _layer_norm(tr: _Tracer, args, kwargs):
    x = args[0]
    norm = tuple(int(v) for v in _arg(args, kwargs, 1, "normalized_shape"))
    if x._shape[len(x._shape) - len(norm) :] != norm:
        raise tr.shape_error(f"layer_norm over {norm} does not match the trailing dims of input {x._shape}")
    w = _arg(args, kwargs, 2, "weight")
    return tr.emit("layernorm", [x], x._shape, bias=w is not None, last_dim=True)


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool(op: str, has_dilation: bool):
    def rule(tr: _Tracer, args, kwargs):
        x = args[0]
        if has_dilation and bool(_arg(args, kwargs, 6, "return_indices", False)):
            raise UnsupportedOpError(
                f"max pooling with return_indices=True in module {tr.module_path()}: the indices "
                "are not a data flow cgbench can represent"
            )
        k = _pair(_arg(args, kwargs, 1, "kernel_size"))
        stride_arg = _arg(args, kwargs, 2, "stride", None)
        s = k if stride_arg in (None, [], ()) else _pair(stride_arg)
        p = _pair(_arg(args, kwargs, 3, "padding", 0))
        if has_dilation:
            d = _pair(_arg(args, kwargs, 4, "dilation", 1))
            ceil = bool(_arg(args, kwargs, 5, "ceil_mode", False))
        else:
            d = (1, 1)
            ceil = bool(_arg(args, kwargs, 4, "ceil_mode", False))
        if len(x._shape) != 4:
            raise tr.shape_error(f"{op} expects a 4-D input (N, C, H, W), got {x._shape}")
        n, c, h, w = x._shape
        out = (n, c, _pool_out(h, k[0], s[0], p[0], d[0], ceil), _pool_out(w, k[1], s[1], p[1], d[1], ceil))
        if out[2] < 1 or out[3] < 1:
            raise tr.shape_error(
                f"{op} (kernel {k}, stride {s}, padding {p}) of input {x._shape} gives output {out}"
            )
        return tr.emit(op, [x], out, weight=(c, c, k[0], k[1]))

    return rule


def _adaptive_pool(op: str):
    def rule(tr: _Tracer, args, kwargs):
        x = args[0]
        size = _arg(args, kwargs, 1, "output_size")
        n, c, h, w = x._shape
        oh, ow = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        oh, ow = (h if oh is None else int(oh)), (w if ow is None else int(ow))
        if (oh, ow) == (1, 1):
            return tr.emit("mean" if op == "avgpool" else "global", [x], (n, c, 1, 1))
        if h % oh or w % ow:
            raise UnsupportedOpError(
                f"adaptive pooling {h}x{w} -> {oh}x{ow} (uneven windows) in {tr.module_path()}"
            )
        return tr.emit(op, [x], (n, c, oh, ow), weight=(c, c, h // oh, w // ow))

    return rule


def _mean(tr: _Tracer, args, kwargs):
    x = args[0]
    dims = _arg(args, kwargs, 1, "dim", None)
    keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
    nd = len(x._shape)
    if dims is None:
        dims = tuple(range(nd))
    dims = {d % nd for d in ((dims,) if isinstance(dims, int) else dims)}
    out = tuple(1 if i in dims else s for i, s in enumerate(x._shape) if keepdim or i not in dims)
    return tr.emit("mean", [x], out)


def _cat(tr: _Tracer, args, kwargs):
    tensors = list(_arg(args, kwargs, 0, "tensors"))
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    values = [t for t in tensors if isinstance(t, Value)]
    shapes = [_shape_of(t) for t in tensors]
    nd = len(shapes[0])
    dim %= nd
    for s in shapes[1:]:
        if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != dim):
            raise tr.shape_error(f"cat along dim {dim}: shapes {shapes[0]} and {s} differ outside it")
    out = list(shapes[0])
    out[dim] = sum(s[dim] for s in shapes)
    if len(tensors) == 1:
        return tensors[0]
    return tr.emit("concat", values, tuple(out))


def _reshape_shape(x: Value, shape: Sequence[int]) -> tuple[int, ...]:
    asked = tuple(int(s) for s in shape)
    shape = list(asked)
    total = math.prod(x._shape)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known and total % known == 0:
            shape[shape.index(-1)] = total // known
    if math.prod(shape) != total or -1 in shape:
        raise _active_tracer().shape_error(f"shape {asked} is invalid for input {x._shape}")
    return tuple(shape)


def _shape_args(args: tuple, kwargs: dict) -> Sequence[int]:
    rest = args[1:]
    if len(rest) == 1 and isinstance(rest[0], (tuple, list, torch.Size)):
        return rest[0]
    return rest or kwargs.get("shape") or kwargs.get("size")


def _reshaped(tr: _Tracer, x: Value, out: tuple[int, ...]) -> Value:
    """Reshapes that flatten feature maps to (N, F) are ``flatten`` nodes; others pass through."""
    if len(out) == 2 and len(x._shape) > 2:
        return tr.emit("flatten", [x], out)
    return Value(out, x.node)


def _view(tr: _Tracer, args, kwargs):
    x = args[0]
    return _reshaped(tr, x, _reshape_shape(x, _shape_args(args, kwargs)))


def _flatten(tr: _Tracer, args, kwargs):
    x = args[0]
    nd = len(x._shape)
    start = int(_arg(args, kwargs, 1, "start_dim", 0)) % nd
    end = int(_arg(args, kwargs, 2, "end_dim", -1)) % nd
    out = x._shape[:start] + (math.prod(x._shape[start : end + 1]),) + x._shape[end + 1 :]
    return _reshaped(tr, x, out)


def _getitem(tr: _Tracer, args, kwargs):
    x, index = args[0], args[1]
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is Ellipsis for i in index):
        at = index.index(Ellipsis)
        fill = len(x._shape) - (len(index) - 1)
        index = index[:at] + (slice(None),) * fill + index[at + 1 :]
    out = []
    for dim, size in enumerate(x._shape):
        idx = index[dim] if dim < len(index) else slice(None)
        if isinstance(idx, slice):
            out.append(len(range(*idx.indices(size))))
        elif isinstance(idx, int):
            if not -size <= idx < size:
                raise IndexError(f"index {idx} is out of bounds for dimension {dim} with size {size}")
            continue
        else:
            raise UnsupportedOpError(f"tensor indexing with {type(idx).__name__} in {tr.module_path()}")
    return Value(tuple(out), x.node)


def _permute(tr: _Tracer, args, kwargs):
    x = args[0]
    dims = _shape_args(args, kwargs)
    return Value(tuple(x._shape[d] for d in dims), x.node)


def _transpose(tr: _Tracer, args, kwargs):
    x = args[0]
    d0, d1 = int(_arg(args, kwargs, 1, "dim0")), int(_arg(args, kwargs, 2, "dim1"))
    shape = list(x._shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return Value(tuple(shape), x.node)


def _squeeze_like(squeeze: bool):
    def rule(tr: _Tracer, args, kwargs):
        x = args[0]
        dim = _arg(args, kwargs, 1, "dim", None)
        shape = list(x._shape)
        if squeeze:
            if dim is None:
                shape = [s for s in shape if s != 1]
            elif shape[dim] == 1:
                del shape[dim]
        else:
            shape.insert(dim % (len(shape) + 1), 1)
        return Value(tuple(shape), x.node)

    return rule


def _chunk(tr: _Tracer, args, kwargs):
    x = args[0]
    chunks = int(_arg(args, kwargs, 1, "chunks"))
    dim = int(_arg(args, kwargs, 2, "dim", 0)) % len(x._shape)
    size = -(-x._shape[dim] // chunks)
    return _split_sizes(x, dim, size)


def _split(tr: _Tracer, args, kwargs):
    x = args[0]
    size = _arg(args, kwargs, 1, "split_size_or_sections")
    dim = int(_arg(args, kwargs, 2, "dim", 0)) % len(x._shape)
    return _split_sizes(x, dim, size)


def _split_sizes(x: Value, dim: int, size: int | Sequence[int]) -> tuple[Value, ...]:
    total = x._shape[dim]
    sizes = list(size) if isinstance(size, (list, tuple)) else [size] * (-(-total // size))
    if not isinstance(size, (list, tuple)):
        sizes[-1] = total - size * (len(sizes) - 1)
    return tuple(Value(x._shape[:dim] + (s,) + x._shape[dim + 1 :], x.node) for s in sizes)


def _pad(tr: _Tracer, args, kwargs):
    x = args[0]
    pad = list(_arg(args, kwargs, 1, "pad"))
    shape = list(x._shape)
    for i in range(len(pad) // 2):
        shape[-1 - i] += int(pad[2 * i]) + int(pad[2 * i + 1])
    return tr.emit("paddings", [x], tuple(shape))


def _interpolate(tr: _Tracer, args, kwargs):
    x = args[0]
    size = _arg(args, kwargs, 1, "size")
    scale = _arg(args, kwargs, 2, "scale_factor")
    n, c, h, w = x._shape
    if size is not None:
        oh, ow = _pair(size)
    else:
        sh, sw = (scale, scale) if not isinstance(scale, (tuple, list)) else scale
        oh, ow = int(h * sh), int(w * sw)
    return tr.emit("upsample", [x], (n, c, oh, ow))


def _pixel_shuffle(op: str, up: bool):
    def rule(tr: _Tracer, args, kwargs):
        x = args[0]
        r = int(_arg(args, kwargs, 1, "upscale_factor" if up else "downscale_factor"))
        n, c, h, w = x._shape
        out = (n, c // (r * r), h * r, w * r) if up else (n, c * r * r, h // r, w // r)
        return tr.emit(op, [x], out)

    return rule


def _softmax(tr: _Tracer, args, kwargs):
    x = args[0]
    return tr.emit("softmax", [x], x._shape)


def _matmul(tr: _Tracer, args, kwargs):
    a, b = args[0], _arg(args, kwargs, 1, "other")
    sa, sb = _shape_of(a), _shape_of(b)
    if len(sa) < 2 or len(sb) < 2:
        raise UnsupportedOpError(f"matmul of a 1-D operand ({sa} @ {sb}) in module {tr.module_path()}")
    if sa[-1] != sb[-2]:
        raise tr.shape_error(f"matmul shapes {sa} and {sb} cannot be multiplied ({sa[-1]} != {sb[-2]})")
    if isinstance(b, torch.Tensor) and not isinstance(a, torch.Tensor) and b.dim() == 2:
        k_in, k_out = (int(v) for v in b.shape)
        return tr.emit("matmul", [a], sa[:-1] + (k_out,), weight=(k_in, k_out, 0, 0), last_dim=True)
    out = _broadcast(sa[:-2], sb[:-2]) + (sa[-2], sb[-1])
    values = [v for v in (a, b) if isinstance(v, Value)]
    # res records the left operand's shape: C_in is the reduced dimension (MACs = out x C_in)
    return Value(out, tr.add_node("matmul", sa, out, values, last_dim=True))


def _contiguous_like(tr: _Tracer, args, kwargs):
    return args[0]


_T = torch.Tensor
_RULES: dict[Callable, Callable[[_Tracer, tuple, dict], Any]] = {}


def _register(funcs: Sequence[Any], rule: Callable) -> None:
    for f in funcs:
        if f is not None:
            _RULES[f] = rule


_register([F.relu, torch.relu, _T.relu], _elementwise("relu", inplace_pos=1))
_register([torch.relu_, _T.relu_, F.relu_], _elementwise("relu", always_inplace=True))
_register([F.relu6], _elementwise("relu6", inplace_pos=1))
_register([F.hardtanh], _hardtanh)
_register([F.sigmoid, torch.sigmoid, _T.sigmoid], _elementwise("sigmoid"))
_register([F.tanh, torch.tanh, _T.tanh], _elementwise("tanh"))
_register([F.silu], _elementwise("swish", inplace_pos=1))
_register([F.gelu], _elementwise("gelu"))
_register([F.hardswish], _elementwise("hardswish", inplace_pos=1))
_register([F.hardsigmoid], _elementwise("hardsigmoid", inplace_pos=1))
_register([F.leaky_relu], _elementwise("leakyrelu", inplace_pos=2))
_register([F.dropout, F.dropout2d], _elementwise("identity", inplace_pos=3))
_register([F.softmax, torch.softmax, _T.softmax], _softmax)
_register([_T.__add__, _T.__radd__, _T.add, torch.add, operator.add], _binary("add"))
_register([_T.__iadd__, _T.add_], _binary("add", inplace=True))
_register([_T.__mul__, _T.__rmul__, _T.mul, torch.mul, operator.mul], _binary("mul"))
_register([_T.__imul__, _T.mul_], _binary("mul", inplace=True))
_register([_T.__sub__, _T.__rsub__, _T.sub, torch.sub], _binary("sub"))
_register([_T.__neg__, torch.neg, _T.neg], _elementwise("mul"))  # -x: a multiplication by -1
_register([_T.__isub__, _T.sub_], _binary("sub", inplace=True))
_register([_T.__truediv__, _T.div, torch.div], _binary("div"))
_register([torch.conv2d, F.conv2d], _conv2d)
_register([F.linear], _linear)
_register([F.batch_norm], _batch_norm)
_register([F.layer_norm], _layer_norm)
_register([F.max_pool2d], _pool("maxpool", True))
_register(
    [getattr(F, "max_pool2d_with_indices", None)],
    lambda tr, a, k: _pool("maxpool", True)(tr, a, {**k, "return_indices": True}),
)
_register([F.avg_pool2d, torch._C._nn.avg_pool2d], _pool("avgpool", False))
_register([F.adaptive_avg_pool2d], _adaptive_pool("avgpool"))
_register([F.adaptive_max_pool2d], _adaptive_pool("maxpool"))
_register([torch.mean, _T.mean], _mean)
_register([torch.cat, torch.concat], _cat)
_register([_T.view, _T.reshape, torch.reshape], _view)
_register([torch.flatten, _T.flatten], _flatten)
_register([_T.__getitem__], _getitem)
_register([_T.permute, torch.permute], _permute)
_register([_T.transpose, torch.transpose], _transpose)
_register([_T.squeeze, torch.squeeze], _squeeze_like(True))
_register([_T.unsqueeze, torch.unsqueeze], _squeeze_like(False))
_register([_T.chunk, torch.chunk], _chunk)
_register([_T.split, torch.split], _split)
_register([F.pad, torch._C._nn.pad], _pad)
_register([F.interpolate], _interpolate)
_register([F.pixel_shuffle], _pixel_shuffle("depthtospacend", True))
_register([F.pixel_unshuffle], _pixel_shuffle("spacetodepthnd", False))
_register([torch.matmul, _T.matmul, _T.__matmul__, torch.bmm], _matmul)
_register([_T.contiguous, _T.clone, _T.detach, _T.float, _T.to, torch.clone], _contiguous_like)


# ---------------------------------------------------------------------- entry point
def extract_cg(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    cache: TraceCache | None = None,
    memo: bool = True,
) -> ComputationGraph:
    """The computation graph of ``model`` applied to one input of shape ``(C, H, W)``.

    No tensor memory is allocated and no kernel runs: shapes come from each op's rule. Pass a
    :class:`TraceCache` to reuse traced sub-modules across calls (see the module docstring);
    ``memo=False`` re-runs every module call (slow; a reference for checking the memo).
    ``input_shape`` excludes the batch dimension (the trace adds a batch of one). Raises
    :class:`ShapeError` where torch would reject a shape and :class:`UnsupportedOpError` for
    ops without a rule, each naming the module path.
    """
    global _ACTIVE
    shape = (1, *(int(v) for v in input_shape))
    if any(v < 1 for v in shape):
        raise ShapeError(f"input_shape {tuple(input_shape)} has a size below 1")
    with _LOCK:
        if _ACTIVE is not None:
            raise RuntimeError("extract_cg() is not re-entrant")
        tracer = _Tracer(model, cache, memo)
        x = Value(shape, tracer.add_node("input", shape, shape, []))
        _ACTIVE = tracer
        nn.Module.__call__ = _patched_call
        try:
            with torch.no_grad():
                out = tracer.call_module(model, (x,), {})
        finally:
            nn.Module.__call__ = _ORIGINAL_CALL
            _ACTIVE = None
        outs = _values_in((out,), {})
        if not outs:
            raise UnsupportedOpError(f"{type(model).__name__} returned no tensor")
        tracer.add_node("output", outs[0]._shape, outs[0]._shape, outs)
    edges = np.asarray(tracer.edges, dtype=np.int32).reshape(-1, 2)
    if len(edges):
        edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
    return ComputationGraph(
        ops=np.asarray(tracer.ops, dtype=np.int16),
        res=np.asarray(tracer.res, dtype=np.int32).reshape(-1, 6),
        weight=np.asarray(tracer.weight, dtype=np.int32).reshape(-1, 4),
        bias=np.asarray(tracer.bias, dtype=bool),
        edges=edges,
        input_shape=tuple(int(v) for v in input_shape),
        num_params=tracer.num_params,
    )


__all__ = [
    "LEAF_MODULES", "ShapeError", "TraceCache", "UnsupportedOpError", "Value", "extract_cg", "op_index",
]  # fmt: skip
