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

class DropoutMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROPOUT_MODE_UNSPECIFIED: _ClassVar[DropoutMode]
    DROPOUT_MODE_TRAIN: _ClassVar[DropoutMode]
    DROPOUT_MODE_TEST: _ClassVar[DropoutMode]

class AttentionMechanism(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTENTION_MECHANISM_UNSPECIFIED: _ClassVar[AttentionMechanism]
    ATTENTION_MECHANISM_SOFTMAX: _ClassVar[AttentionMechanism]
    ATTENTION_MECHANISM_IDENTITY: _ClassVar[AttentionMechanism]
    ATTENTION_MECHANISM_ABS: _ClassVar[AttentionMechanism]
    ATTENTION_MECHANISM_RELU: _ClassVar[AttentionMechanism]

class PositionalEmbedding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POSITIONAL_EMBEDDING_UNSPECIFIED: _ClassVar[PositionalEmbedding]
    POSITIONAL_EMBEDDING_NONE: _ClassVar[PositionalEmbedding]
    POSITIONAL_EMBEDDING_SUM: _ClassVar[PositionalEmbedding]
    POSITIONAL_EMBEDDING_CONCAT: _ClassVar[PositionalEmbedding]
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
DROPOUT_MODE_UNSPECIFIED: DropoutMode
DROPOUT_MODE_TRAIN: DropoutMode
DROPOUT_MODE_TEST: DropoutMode
ATTENTION_MECHANISM_UNSPECIFIED: AttentionMechanism
ATTENTION_MECHANISM_SOFTMAX: AttentionMechanism
ATTENTION_MECHANISM_IDENTITY: AttentionMechanism
ATTENTION_MECHANISM_ABS: AttentionMechanism
ATTENTION_MECHANISM_RELU: AttentionMechanism
POSITIONAL_EMBEDDING_UNSPECIFIED: PositionalEmbedding
POSITIONAL_EMBEDDING_NONE: PositionalEmbedding
POSITIONAL_EMBEDDING_SUM: PositionalEmbedding
POSITIONAL_EMBEDDING_CONCAT: PositionalEmbedding

class Architecture(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("serial", "dense", "relu", "ab_relu", "leaky_relu", "abs", "erf", "conv", "avg_pool", "sum_pool", "global_avg_pool", "global_sum_pool", "flatten", "parallel", "fan_out", "fan_in_sum", "fan_in_prod", "fan_in_concat", "identity", "repeat", "sigmoid_like", "gelu", "sign", "sin", "cos", "rbf", "exp", "gaussian", "monomial", "rectified_monomial", "polynomial", "hermite", "elementwise_numerical", "layer_norm", "dropout", "gabor", "exp_normalized", "conv_transpose", "conv_local", "global_self_attention", "aggregate")
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
    LAYER_NORM_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    GABOR_FIELD_NUMBER: _ClassVar[int]
    EXP_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    CONV_TRANSPOSE_FIELD_NUMBER: _ClassVar[int]
    CONV_LOCAL_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SELF_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
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
    layer_norm: LayerNorm
    dropout: Dropout
    gabor: Gabor
    exp_normalized: ExpNormalized
    conv_transpose: ConvTranspose
    conv_local: ConvLocal
    global_self_attention: GlobalSelfAttention
    aggregate: Aggregate
    def __init__(self, serial: _Optional[_Union[Serial, _Mapping]] = ..., dense: _Optional[_Union[Dense, _Mapping]] = ..., relu: _Optional[_Union[Relu, _Mapping]] = ..., ab_relu: _Optional[_Union[ABRelu, _Mapping]] = ..., leaky_relu: _Optional[_Union[LeakyRelu, _Mapping]] = ..., abs: _Optional[_Union[Abs, _Mapping]] = ..., erf: _Optional[_Union[Erf, _Mapping]] = ..., conv: _Optional[_Union[Conv, _Mapping]] = ..., avg_pool: _Optional[_Union[AvgPool, _Mapping]] = ..., sum_pool: _Optional[_Union[SumPool, _Mapping]] = ..., global_avg_pool: _Optional[_Union[GlobalAvgPool, _Mapping]] = ..., global_sum_pool: _Optional[_Union[GlobalSumPool, _Mapping]] = ..., flatten: _Optional[_Union[Flatten, _Mapping]] = ..., parallel: _Optional[_Union[Parallel, _Mapping]] = ..., fan_out: _Optional[_Union[FanOut, _Mapping]] = ..., fan_in_sum: _Optional[_Union[FanInSum, _Mapping]] = ..., fan_in_prod: _Optional[_Union[FanInProd, _Mapping]] = ..., fan_in_concat: _Optional[_Union[FanInConcat, _Mapping]] = ..., identity: _Optional[_Union[Identity, _Mapping]] = ..., repeat: _Optional[_Union[Repeat, _Mapping]] = ..., sigmoid_like: _Optional[_Union[SigmoidLike, _Mapping]] = ..., gelu: _Optional[_Union[Gelu, _Mapping]] = ..., sign: _Optional[_Union[Sign, _Mapping]] = ..., sin: _Optional[_Union[Sin, _Mapping]] = ..., cos: _Optional[_Union[Cos, _Mapping]] = ..., rbf: _Optional[_Union[Rbf, _Mapping]] = ..., exp: _Optional[_Union[Exp, _Mapping]] = ..., gaussian: _Optional[_Union[Gaussian, _Mapping]] = ..., monomial: _Optional[_Union[Monomial, _Mapping]] = ..., rectified_monomial: _Optional[_Union[RectifiedMonomial, _Mapping]] = ..., polynomial: _Optional[_Union[Polynomial, _Mapping]] = ..., hermite: _Optional[_Union[Hermite, _Mapping]] = ..., elementwise_numerical: _Optional[_Union[ElementwiseNumerical, _Mapping]] = ..., layer_norm: _Optional[_Union[LayerNorm, _Mapping]] = ..., dropout: _Optional[_Union[Dropout, _Mapping]] = ..., gabor: _Optional[_Union[Gabor, _Mapping]] = ..., exp_normalized: _Optional[_Union[ExpNormalized, _Mapping]] = ..., conv_transpose: _Optional[_Union[ConvTranspose, _Mapping]] = ..., conv_local: _Optional[_Union[ConvLocal, _Mapping]] = ..., global_self_attention: _Optional[_Union[GlobalSelfAttention, _Mapping]] = ..., aggregate: _Optional[_Union[Aggregate, _Mapping]] = ...) -> None: ...

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

class Aggregate(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Gabor(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExpNormalized(_message.Message):
    __slots__ = ("gamma", "shift", "do_clip")
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    DO_CLIP_FIELD_NUMBER: _ClassVar[int]
    gamma: float
    shift: float
    do_clip: bool
    def __init__(self, gamma: _Optional[float] = ..., shift: _Optional[float] = ..., do_clip: bool = ...) -> None: ...

class LayerNorm(_message.Message):
    __slots__ = ("axis", "eps")
    AXIS_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    axis: _containers.RepeatedScalarFieldContainer[int]
    eps: float
    def __init__(self, axis: _Optional[_Iterable[int]] = ..., eps: _Optional[float] = ...) -> None: ...

class Dropout(_message.Message):
    __slots__ = ("rate", "mode")
    RATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    rate: float
    mode: DropoutMode
    def __init__(self, rate: _Optional[float] = ..., mode: _Optional[_Union[DropoutMode, str]] = ...) -> None: ...

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

class ConvTranspose(_message.Message):
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

class ConvLocal(_message.Message):
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

class GlobalSelfAttention(_message.Message):
    __slots__ = ("n_chan_out", "n_chan_key", "n_chan_val", "n_heads", "linear_scaling", "w_key_std", "w_value_std", "w_query_std", "w_out_std", "b_std", "attention_mechanism", "pos_emb_type", "n_chan_pos_emb", "w_pos_emb_std", "val_pos_emb")
    N_CHAN_OUT_FIELD_NUMBER: _ClassVar[int]
    N_CHAN_KEY_FIELD_NUMBER: _ClassVar[int]
    N_CHAN_VAL_FIELD_NUMBER: _ClassVar[int]
    N_HEADS_FIELD_NUMBER: _ClassVar[int]
    LINEAR_SCALING_FIELD_NUMBER: _ClassVar[int]
    W_KEY_STD_FIELD_NUMBER: _ClassVar[int]
    W_VALUE_STD_FIELD_NUMBER: _ClassVar[int]
    W_QUERY_STD_FIELD_NUMBER: _ClassVar[int]
    W_OUT_STD_FIELD_NUMBER: _ClassVar[int]
    B_STD_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_MECHANISM_FIELD_NUMBER: _ClassVar[int]
    POS_EMB_TYPE_FIELD_NUMBER: _ClassVar[int]
    N_CHAN_POS_EMB_FIELD_NUMBER: _ClassVar[int]
    W_POS_EMB_STD_FIELD_NUMBER: _ClassVar[int]
    VAL_POS_EMB_FIELD_NUMBER: _ClassVar[int]
    n_chan_out: int
    n_chan_key: int
    n_chan_val: int
    n_heads: int
    linear_scaling: bool
    w_key_std: float
    w_value_std: float
    w_query_std: float
    w_out_std: float
    b_std: float
    attention_mechanism: AttentionMechanism
    pos_emb_type: PositionalEmbedding
    n_chan_pos_emb: int
    w_pos_emb_std: float
    val_pos_emb: bool
    def __init__(self, n_chan_out: _Optional[int] = ..., n_chan_key: _Optional[int] = ..., n_chan_val: _Optional[int] = ..., n_heads: _Optional[int] = ..., linear_scaling: bool = ..., w_key_std: _Optional[float] = ..., w_value_std: _Optional[float] = ..., w_query_std: _Optional[float] = ..., w_out_std: _Optional[float] = ..., b_std: _Optional[float] = ..., attention_mechanism: _Optional[_Union[AttentionMechanism, str]] = ..., pos_emb_type: _Optional[_Union[PositionalEmbedding, str]] = ..., n_chan_pos_emb: _Optional[int] = ..., w_pos_emb_std: _Optional[float] = ..., val_pos_emb: bool = ...) -> None: ...

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
