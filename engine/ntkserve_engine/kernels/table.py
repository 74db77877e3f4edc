"""The layer table: proto `Layer` oneof field -> engine row. One row per message type.

`LAYERS` holds the layers' rows (`LayerRow`), `COMBINATORS` the combinators' (`CombinatorRow`,
see `combinators.py`). A contract test checks that every field of the `Layer` oneof is in
exactly one of them, and has an `ntkserve.stax` builder.
"""

from __future__ import annotations

from collections.abc import Mapping

from ntkserve_engine.kernels.abrelu import AB_RELU, ABS, LEAKY_RELU, RELU
from ntkserve_engine.kernels.aggregate import AGGREGATE
from ntkserve_engine.kernels.arccosine import RECTIFIED_MONOMIAL, SIGN
from ntkserve_engine.kernels.attention import GLOBAL_SELF_ATTENTION
from ntkserve_engine.kernels.combinators import (
    FAN_IN_CONCAT,
    FAN_IN_PROD,
    FAN_IN_SUM,
    FAN_OUT,
    IDENTITY,
    PARALLEL,
    REPEAT,
    SERIAL,
)
from ntkserve_engine.kernels.conv_variants import CONV_LOCAL, CONV_TRANSPOSE
from ntkserve_engine.kernels.dense import DENSE
from ntkserve_engine.kernels.erf import ERF, GELU, SIGMOID_LIKE
from ntkserve_engine.kernels.exp_normalized import EXP_NORMALIZED
from ntkserve_engine.kernels.exponential import COS, EXP, GABOR, GAUSSIAN, RBF, SIN
from ntkserve_engine.kernels.normalization import DROPOUT, LAYER_NORM
from ntkserve_engine.kernels.numerical import ELEMENTWISE_NUMERICAL
from ntkserve_engine.kernels.polynomial import HERMITE, MONOMIAL, POLYNOMIAL
from ntkserve_engine.kernels.rows import CombinatorRow, LayerRow
from ntkserve_engine.kernels.spatial import (
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

COMBINATORS: Mapping[str, CombinatorRow] = {
    "serial": SERIAL,
    "parallel": PARALLEL,
    "fan_out": FAN_OUT,
    "fan_in_sum": FAN_IN_SUM,
    "fan_in_prod": FAN_IN_PROD,
    "fan_in_concat": FAN_IN_CONCAT,
    "identity": IDENTITY,
    "repeat": REPEAT,
}
