from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Parameterization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETERIZATION_UNSPECIFIED: _ClassVar[Parameterization]
    PARAMETERIZATION_NTK: _ClassVar[Parameterization]
    PARAMETERIZATION_STANDARD: _ClassVar[Parameterization]

class Padding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PADDING_UNSPECIFIED: _ClassVar[Padding]
    PADDING_VALID: _ClassVar[Padding]
    PADDING_SAME: _ClassVar[Padding]
    PADDING_CIRCULAR: _ClassVar[Padding]

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_SIGMOID: _ClassVar[Activation]
    ACTIVATION_SWISH: _ClassVar[Activation]
    ACTIVATION_SOFTPLUS: _ClassVar[Activation]
    ACTIVATION_ELU: _ClassVar[Activation]
    ACTIVATION_SELU: _ClassVar[Activation]
    ACTIVATION_MISH: _ClassVar[Activation]
    ACTIVATION_GELU_TANH: _ClassVar[Activation]
    ACTIVATION_SOFTSIGN: _ClassVar[Activation]
    ACTIVATION_ERF: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]
PARAMETERIZATION_UNSPECIFIED: Parameterization
PARAMETERIZATION_NTK: Parameterization
PARAMETERIZATION_STANDARD: Parameterization
PADDING_UNSPECIFIED: Padding
PADDING_VALID: Padding
PADDING_SAME: Padding
PADDING_CIRCULAR: Padding
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_TANH: Activation
ACTIVATION_SIGMOID: Activation
ACTIVATION_SWISH: Activation
ACTIVATION_SOFTPLUS: Activation
ACTIVATION_ELU: Activation
ACTIVATION_SELU: Activation
ACTIVATION_MISH: Activation
ACTIVATION_GELU_TANH: Activation
ACTIVATION_SOFTSIGN: Activation
ACTIVATION_ERF: Activation
ACTIVATION_RELU: Activation

class Architecture(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("serial", "dense", "relu", "ab_relu", "leaky_relu", "abs", "erf", "conv", "avg_pool", "sum_pool", "global_avg_pool", "global_sum_pool", "flatten", "parallel", "fan_out", "fan_in_sum", "fan_in_prod", "fan_in_concat", "identity", "repeat", "sigmoid_like", "gelu", "sign", "sin", "cos", "rbf", "exp", "gaussian", "monomial", "rectified_monomial", "polynomial", "hermite", "elementwise_numerical")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    RELU_FIELD_NUMBER: _ClassVar[int]
    AB_RELU_FIELD_NUMBER: _ClassVar[int]
    LEAKY_RELU_FIELD_NUMBER: _ClassVar[int]
    ABS_FIELD_NUMBER: _ClassVar[int]
    ERF_FIELD_NUMBER: _ClassVar[int]
    CONV_FIELD_NUMBER: _ClassVar[int]
    AVG_POOL_FIELD_NUMBER: _ClassVar[int]
    SUM_POOL_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_AVG_POOL_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SUM_POOL_FIELD_NUMBER: _ClassVar[int]
    FLATTEN_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    FAN_IN_SUM_FIELD_NUMBER: _ClassVar[int]
    FAN_IN_PROD_FIELD_NUMBER: _ClassVar[int]
    FAN_IN_CONCAT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REPEAT_FIELD_NUMBER: _ClassVar[int]
    SIGMOID_LIKE_FIELD_NUMBER: _ClassVar[int]
    GELU_FIELD_NUMBER: _ClassVar[int]
    SIGN_FIELD_NUMBER: _ClassVar[int]
    SIN_FIELD_NUMBER: _ClassVar[int]
    COS_FIELD_NUMBER: _ClassVar[int]
    RBF_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    GAUSSIAN_FIELD_NUMBER: _ClassVar[int]
    MONOMIAL_FIELD_NUMBER: _ClassVar[int]
    RECTIFIED_MONOMIAL_FIELD_NUMBER: _ClassVar[int]
    POLYNOMIAL_FIELD_NUMBER: _ClassVar[int]
    HERMITE_FIELD_NUMBER: _ClassVar[int]
    ELEMENTWISE_NUMERICAL_FIELD_NUMBER: _ClassVar[int]
    serial: Serial
    dense: Dense
    relu: Relu
    ab_relu: ABRelu
    leaky_relu: LeakyRelu
    abs: Abs
    erf: Erf
    conv: Conv
    avg_pool: AvgPool
    sum_pool: SumPool
    global_avg_pool: GlobalAvgPool
    global_sum_pool: GlobalSumPool
    flatten: Flatten
    parallel: Parallel
    fan_out: FanOut
    fan_in_sum: FanInSum
    fan_in_prod: FanInProd
    fan_in_concat: FanInConcat
    identity: Identity
    repeat: Repeat
    sigmoid_like: SigmoidLike
    gelu: Gelu
    sign: Sign
    sin: Sin
    cos: Cos
    rbf: Rbf
    exp: Exp
    gaussian: Gaussian
    monomial: Monomial
    rectified_monomial: RectifiedMonomial
    polynomial: Polynomial
    hermite: Hermite
    elementwise_numerical: ElementwiseNumerical
    def __init__(self, serial: _Optional[_Union[Serial, _Mapping]] = ..., dense: _Optional[_Union[Dense, _Mapping]] = ..., relu: _Optional[_Union[Relu, _Mapping]] = ..., ab_relu: _Optional[_Union[ABRelu, _Mapping]] = ..., leaky_relu: _Optional[_Union[LeakyRelu, _Mapping]] = ..., abs: _Optional[_Union[Abs, _Mapping]] = ..., erf: _Optional[_Union[Erf, _Mapping]] = ..., conv: _Optional[_Union[Conv, _Mapping]] = ..., avg_pool: _Optional[_Union[AvgPool, _Mapping]] = ..., sum_pool: _Optional[_Union[SumPool, _Mapping]] = ..., global_avg_pool: _Optional[_Union[GlobalAvgPool, _Mapping]] = ..., global_sum_pool: _Optional[_Union[GlobalSumPool, _Mapping]] = ..., flatten: _Optional[_Union[Flatten, _Mapping]] = ..., parallel: _Optional[_Union[Parallel, _Mapping]] = ..., fan_out: _Optional[_Union[FanOut, _Mapping]] = ..., fan_in_sum: _Optional[_Union[FanInSum, _Mapping]] = ..., fan_in_prod: _Optional[_Union[FanInProd, _Mapping]] = ..., fan_in_concat: _Optional[_Union[FanInConcat, _Mapping]] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., repeat: _Optional[_Union[Repeat, _Mapping]] = ..., sigmoid_like: _Optional[_Union[SigmoidLike, _Mapping]] = ..., gelu: _Optional[_Union[Gelu, _Mapping]] = ..., sign: _Optional[_Union[Sign, _Mapping]] = ..., sin: _Optional[_Union[Sin, _Mapping]] = ..., cos: _Optional[_Union[Cos, _Mapping]] = ..., rbf: _Optional[_Union[Rbf, _Mapping]] = ..., exp: _Optional[_Union[Exp, _Mapping]] = ..., gaussian: _Optional[_Union[Gaussian, _Mapping]] = ..., monomial: _Optional[_Union[Monomial, _Mapping]] = ..., rectified_monomial: _Optional[_Union[RectifiedMonomial, _Mapping]] = ..., polynomial: _Optional[_Union[Polynomial, _Mapping]] = ..., hermite: _Optional[_Union[Hermite, _Mapping]] = ..., elementwise_numerical: _Optional[_Union[ElementwiseNumerical, _Mapping]] = ...) -> None: ...

class Serial(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class Dense(_message.Message):
    __slots__ = ("out_dim", "w_std", "b_std", "parameterization", "s_in", "s_out")
    OUT_DIM_FIELD_NUMBER: _ClassVar[int]
    W_STD_FIELD_NUMBER: _ClassVar[int]
    B_STD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERIZATION_FIELD_NUMBER: _ClassVar[int]
    S_IN_FIELD_NUMBER: _ClassVar[int]
    S_OUT_FIELD_NUMBER: _ClassVar[int]
    out_dim: int
    w_std: float
    b_std: float
    parameterization: Parameterization
    s_in: int
    s_out: int
    def __init__(self, out_dim: _Optional[int] = ..., w_std: _Optional[float] = ..., b_std: _Optional[float] = ..., parameterization: _Optional[_Union[Parameterization, str]] = ..., s_in: _Optional[int] = ..., s_out: _Optional[int] = ...) -> None: ...

class Relu(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ABRelu(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ...) -> None: ...

class LeakyRelu(_message.Message):
    __slots__ = ("alpha",)
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    def __init__(self, alpha: _Optional[float] = ...) -> None: ...

class Abs(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Erf(_message.Message):
    __slots__ = ("a", "b", "c")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    c: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ..., c: _Optional[float] = ...) -> None: ...

class SigmoidLike(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Gelu(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Sign(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Sin(_message.Message):
    __slots__ = ("a", "b", "c")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    c: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ..., c: _Optional[float] = ...) -> None: ...

class Cos(_message.Message):
    __slots__ = ("a", "b", "c")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    c: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ..., c: _Optional[float] = ...) -> None: ...

class Rbf(_message.Message):
    __slots__ = ("gamma",)
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    gamma: float
    def __init__(self, gamma: _Optional[float] = ...) -> None: ...

class Exp(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ...) -> None: ...

class Gaussian(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: float
    b: float
    def __init__(self, a: _Optional[float] = ..., b: _Optional[float] = ...) -> None: ...

class Monomial(_message.Message):
    __slots__ = ("degree",)
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    degree: int
    def __init__(self, degree: _Optional[int] = ...) -> None: ...

class RectifiedMonomial(_message.Message):
    __slots__ = ("degree",)
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    degree: int
    def __init__(self, degree: _Optional[int] = ...) -> None: ...

class Polynomial(_message.Message):
    __slots__ = ("coef",)
    COEF_FIELD_NUMBER: _ClassVar[int]
    coef: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, coef: _Optional[_Iterable[float]] = ...) -> None: ...

class Hermite(_message.Message):
    __slots__ = ("degree",)
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    degree: int
    def __init__(self, degree: _Optional[int] = ...) -> None: ...

class ElementwiseNumerical(_message.Message):
    __slots__ = ("activation", "deg")
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    DEG_FIELD_NUMBER: _ClassVar[int]
    activation: Activation
    deg: int
    def __init__(self, activation: _Optional[_Union[Activation, str]] = ..., deg: _Optional[int] = ...) -> None: ...

class Conv(_message.Message):
    __slots__ = ("out_chan", "filter_shape", "strides", "padding", "w_std", "b_std", "parameterization", "s_in", "s_out")
    OUT_CHAN_FIELD_NUMBER: _ClassVar[int]
    FILTER_SHAPE_FIELD_NUMBER: _ClassVar[int]
    STRIDES_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    W_STD_FIELD_NUMBER: _ClassVar[int]
    B_STD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERIZATION_FIELD_NUMBER: _ClassVar[int]
    S_IN_FIELD_NUMBER: _ClassVar[int]
    S_OUT_FIELD_NUMBER: _ClassVar[int]
    out_chan: int
    filter_shape: _containers.RepeatedScalarFieldContainer[int]
    strides: _containers.RepeatedScalarFieldContainer[int]
    padding: Padding
    w_std: float
    b_std: float
    parameterization: Parameterization
    s_in: int
    s_out: int
    def __init__(self, out_chan: _Optional[int] = ..., filter_shape: _Optional[_Iterable[int]] = ..., strides: _Optional[_Iterable[int]] = ..., padding: _Optional[_Union[Padding, str]] = ..., w_std: _Optional[float] = ..., b_std: _Optional[float] = ..., parameterization: _Optional[_Union[Parameterization, str]] = ..., s_in: _Optional[int] = ..., s_out: _Optional[int] = ...) -> None: ...

class AvgPool(_message.Message):
    __slots__ = ("window_shape", "strides", "padding", "normalize_edges")
    WINDOW_SHAPE_FIELD_NUMBER: _ClassVar[int]
    STRIDES_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_EDGES_FIELD_NUMBER: _ClassVar[int]
    window_shape: _containers.RepeatedScalarFieldContainer[int]
    strides: _containers.RepeatedScalarFieldContainer[int]
    padding: Padding
    normalize_edges: bool
    def __init__(self, window_shape: _Optional[_Iterable[int]] = ..., strides: _Optional[_Iterable[int]] = ..., padding: _Optional[_Union[Padding, str]] = ..., normalize_edges: bool = ...) -> None: ...

class SumPool(_message.Message):
    __slots__ = ("window_shape", "strides", "padding")
    WINDOW_SHAPE_FIELD_NUMBER: _ClassVar[int]
    STRIDES_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    window_shape: _containers.RepeatedScalarFieldContainer[int]
    strides: _containers.RepeatedScalarFieldContainer[int]
    padding: Padding
    def __init__(self, window_shape: _Optional[_Iterable[int]] = ..., strides: _Optional[_Iterable[int]] = ..., padding: _Optional[_Union[Padding, str]] = ...) -> None: ...

class GlobalAvgPool(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GlobalSumPool(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Flatten(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Parallel(_message.Message):
    __slots__ = ("branches",)
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    branches: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, branches: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class FanOut(_message.Message):
    __slots__ = ("num",)
    NUM_FIELD_NUMBER: _ClassVar[int]
    num: int
    def __init__(self, num: _Optional[int] = ...) -> None: ...

class FanInSum(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FanInProd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FanInConcat(_message.Message):
    __slots__ = ("axis",)
    AXIS_FIELD_NUMBER: _ClassVar[int]
    axis: int
    def __init__(self, axis: _Optional[int] = ...) -> None: ...

class Identity(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Repeat(_message.Message):
    __slots__ = ("layer", "n")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    layer: Layer
    n: int
    def __init__(self, layer: _Optional[_Union[Layer, _Mapping]] = ..., n: _Optional[int] = ...) -> None: ...
