"""The layer table: proto `Layer` oneof field -> engine row. One row per layer type.

Combinators (serial) are not rows: they are folds over rows, done when compiling. A
contract test checks that every field of the `Layer` oneof is here or in COMBINATORS, and
has an `ntkserve.stax` builder.
"""

from __future__ import annotations

from collections.abc import Mapping

from ntkserve_server.kernels.abrelu import AB_RELU, ABS, LEAKY_RELU, RELU
from ntkserve_server.kernels.aggregate import AGGREGATE
from ntkserve_server.kernels.arccosine import RECTIFIED_MONOMIAL, SIGN
from ntkserve_server.kernels.attention import GLOBAL_SELF_ATTENTION
from ntkserve_server.kernels.conv_variants import CONV_LOCAL, CONV_TRANSPOSE
from ntkserve_server.kernels.dense import DENSE
from ntkserve_server.kernels.erf import ERF, GELU, SIGMOID_LIKE
from ntkserve_server.kernels.exp_normalized import EXP_NORMALIZED
from ntkserve_server.kernels.exponential import COS, EXP, GABOR, GAUSSIAN, RBF, SIN
from ntkserve_server.kernels.normalization import DROPOUT, LAYER_NORM
from ntkserve_server.kernels.numerical import ELEMENTWISE_NUMERICAL
from ntkserve_server.kernels.polynomial import HERMITE, MONOMIAL, POLYNOMIAL
from ntkserve_server.kernels.rows import LayerRow
from ntkserve_server.kernels.spatial import (
    AVG_POOL,
    CONV,
    FLATTEN,
    GLOBAL_AVG_POOL,
    GLOBAL_SUM_POOL,
    SUM_POOL,
)

LAYERS: Mapping[str, LayerRow] = {
    "dense": DENSE,
    "relu": RELU,
    "ab_relu": AB_RELU,
    "leaky_relu": LEAKY_RELU,
    "abs": ABS,
    "erf": ERF,
    "conv": CONV,
    "conv_transpose": CONV_TRANSPOSE,
    "conv_local": CONV_LOCAL,
    "avg_pool": AVG_POOL,
    "sum_pool": SUM_POOL,
    "global_avg_pool": GLOBAL_AVG_POOL,
    "global_sum_pool": GLOBAL_SUM_POOL,
    "flatten": FLATTEN,
    "sigmoid_like": SIGMOID_LIKE,
    "gelu": GELU,
    "sign": SIGN,
    "sin": SIN,
    "cos": COS,
    "rbf": RBF,
    "exp": EXP,
    "gaussian": GAUSSIAN,
    "monomial": MONOMIAL,
    "rectified_monomial": RECTIFIED_MONOMIAL,
    "polynomial": POLYNOMIAL,
    "hermite": HERMITE,
    "elementwise_numerical": ELEMENTWISE_NUMERICAL,
    "layer_norm": LAYER_NORM,
    "dropout": DROPOUT,
    "gabor": GABOR,
    "exp_normalized": EXP_NORMALIZED,
    "global_self_attention": GLOBAL_SELF_ATTENTION,
    "aggregate": AGGREGATE,
}

COMBINATORS = frozenset(
    {
        "serial",
        "parallel",
        "fan_out",
        "fan_in_sum",
        "fan_in_prod",
        "fan_in_concat",
        "identity",
        "repeat",
    }
)
