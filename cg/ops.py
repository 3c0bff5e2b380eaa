"""The versioned operator vocabulary of computation graphs.

Indices 0-31 are GENNAPE's categories in GENNAPE's order (index 0 = out-of-vocabulary), so a
GENNAPE CG and a cgbench CG share one vocabulary. Indices from 32 on extend it for operators
that PyTorch networks use and GENNAPE's TensorFlow pipeline never met. Extending the list means
a new ``VOCAB_VERSION``; existing indices never change meaning.
"""

from __future__ import annotations

VOCAB_VERSION = "ops/1"

OPS: tuple[str, ...] = (
    "oov",  # 0: out of vocabulary
    "input",
    "output",
    "conv",
    "depthwise",
    "batchnorm",
    "relu",
    "relu6",
    "matmul",
    "add",
    "mul",  # 10
    "concat",
    "maxpool",
    "avgpool",
    "sigmoid",
    "tanh",
    "swish",
    "gelu",
    "paddings",
    "mean",
    "spacetobatchnd",  # 20
    "batchtospacend",
    "spacetodepthnd",
    "depthtospacend",
    "global",
    "identity",
    "zero",
    "reserved1",
    "reserved2",
    "reserved3",
    "reserved4",  # 30
    "reserved5",
    # --- cgbench extensions (ops/1) ---
    "hardswish",  # 32
    "hardsigmoid",
    "flatten",
    "layernorm",
    "softmax",
    "sub",
    "div",
    "leakyrelu",
    "upsample",  # 40
)

OP_INDEX: dict[str, int] = {name: i for i, name in enumerate(OPS)}

# Ops that carry a weight tensor: node_weight is filled for them.
WEIGHTED_OPS = frozenset({"conv", "depthwise", "matmul"})
# Normalisation ops whose ``node_bias`` flag means "has learnable affine scale and shift".
AFFINE_NORM_OPS = frozenset({"batchnorm", "layernorm"})

# GENNAPE's TensorFlow node labels -> our category (labels such as "add_6" map by prefix).
GENNAPE_LABEL_ALIASES: dict[str, str] = {
    "conv2d": "conv",
    "fusedbatchnorm": "batchnorm",
    "fusedbatchnormv3": "batchnorm",
    "addn": "add",
    "biasadd": "add",
}


def op_index(name: str) -> int:
    """Vocabulary index of ``name``; raises ``KeyError`` naming the known ops."""
    try:
        return OP_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; vocabulary {VOCAB_VERSION}: {', '.join(OPS)}") from None
