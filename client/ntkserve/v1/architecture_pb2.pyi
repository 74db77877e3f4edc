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
PARAMETERIZATION_UNSPECIFIED: Parameterization
PARAMETERIZATION_NTK: Parameterization
PARAMETERIZATION_STANDARD: Parameterization

class Architecture(_message.Message):
    __slots__ = ("layers",)
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("serial", "dense", "relu", "ab_relu", "leaky_relu", "abs", "erf")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    DENSE_FIELD_NUMBER: _ClassVar[int]
    RELU_FIELD_NUMBER: _ClassVar[int]
    AB_RELU_FIELD_NUMBER: _ClassVar[int]
    LEAKY_RELU_FIELD_NUMBER: _ClassVar[int]
    ABS_FIELD_NUMBER: _ClassVar[int]
    ERF_FIELD_NUMBER: _ClassVar[int]
    serial: Serial
    dense: Dense
    relu: Relu
    ab_relu: ABRelu
    leaky_relu: LeakyRelu
    abs: Abs
    erf: Erf
    def __init__(self, serial: _Optional[_Union[Serial, _Mapping]] = ..., dense: _Optional[_Union[Dense, _Mapping]] = ..., relu: _Optional[_Union[Relu, _Mapping]] = ..., ab_relu: _Optional[_Union[ABRelu, _Mapping]] = ..., leaky_relu: _Optional[_Union[LeakyRelu, _Mapping]] = ..., abs: _Optional[_Union[Abs, _Mapping]] = ..., erf: _Optional[_Union[Erf, _Mapping]] = ...) -> None: ...

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
