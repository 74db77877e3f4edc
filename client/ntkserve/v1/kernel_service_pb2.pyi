from ntkserve.v1 import architecture_pb2 as _architecture_pb2
from ntkserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KernelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KERNEL_KIND_UNSPECIFIED: _ClassVar[KernelKind]
    KERNEL_KIND_NNGP: _ClassVar[KernelKind]
    KERNEL_KIND_NTK: _ClassVar[KernelKind]

class InputSlot(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_SLOT_UNSPECIFIED: _ClassVar[InputSlot]
    INPUT_SLOT_X1: _ClassVar[InputSlot]
    INPUT_SLOT_X2: _ClassVar[InputSlot]
    INPUT_SLOT_PATTERN1: _ClassVar[InputSlot]
    INPUT_SLOT_PATTERN2: _ClassVar[InputSlot]
    INPUT_SLOT_Y_TRAIN: _ClassVar[InputSlot]
KERNEL_KIND_UNSPECIFIED: KernelKind
KERNEL_KIND_NNGP: KernelKind
KERNEL_KIND_NTK: KernelKind
INPUT_SLOT_UNSPECIFIED: InputSlot
INPUT_SLOT_X1: InputSlot
INPUT_SLOT_X2: InputSlot
INPUT_SLOT_PATTERN1: InputSlot
INPUT_SLOT_PATTERN2: InputSlot
INPUT_SLOT_Y_TRAIN: InputSlot

class ArchitectureRecord(_message.Message):
    __slots__ = ("architecture_id", "architecture", "create_time")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    architecture: _architecture_pb2.Architecture
    create_time: float
    def __init__(self, architecture_id: _Optional[str] = ..., architecture: _Optional[_Union[_architecture_pb2.Architecture, _Mapping]] = ..., create_time: _Optional[float] = ...) -> None: ...

class RegisterArchitectureRequest(_message.Message):
    __slots__ = ("architecture",)
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    architecture: _architecture_pb2.Architecture
    def __init__(self, architecture: _Optional[_Union[_architecture_pb2.Architecture, _Mapping]] = ...) -> None: ...

class RegisterArchitectureResponse(_message.Message):
    __slots__ = ("architecture_id", "created")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    created: bool
    def __init__(self, architecture_id: _Optional[str] = ..., created: bool = ...) -> None: ...

class GetArchitectureRequest(_message.Message):
    __slots__ = ("architecture_id",)
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    def __init__(self, architecture_id: _Optional[str] = ...) -> None: ...

class GetArchitectureResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: ArchitectureRecord
    def __init__(self, record: _Optional[_Union[ArchitectureRecord, _Mapping]] = ...) -> None: ...

class ListArchitecturesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListArchitecturesResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[ArchitectureRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[ArchitectureRecord, _Mapping]]] = ...) -> None: ...

class DeleteArchitectureRequest(_message.Message):
    __slots__ = ("architecture_id",)
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    def __init__(self, architecture_id: _Optional[str] = ...) -> None: ...

class DeleteArchitectureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ComputeKernelRequest(_message.Message):
    __slots__ = ("architecture_id", "x1", "x2", "get", "mask_constant", "pattern1", "pattern2")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    MASK_CONSTANT_FIELD_NUMBER: _ClassVar[int]
    PATTERN1_FIELD_NUMBER: _ClassVar[int]
    PATTERN2_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    x1: _tensor_pb2.Tensor
    x2: _tensor_pb2.Tensor
    get: _containers.RepeatedScalarFieldContainer[KernelKind]
    mask_constant: float
    pattern1: _tensor_pb2.Tensor
    pattern2: _tensor_pb2.Tensor
    def __init__(self, architecture_id: _Optional[str] = ..., x1: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., x2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., get: _Optional[_Iterable[_Union[KernelKind, str]]] = ..., mask_constant: _Optional[float] = ..., pattern1: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., pattern2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ComputeKernelResponse(_message.Message):
    __slots__ = ("nngp", "ntk")
    NNGP_FIELD_NUMBER: _ClassVar[int]
    NTK_FIELD_NUMBER: _ClassVar[int]
    nngp: _tensor_pb2.Tensor
    ntk: _tensor_pb2.Tensor
    def __init__(self, nngp: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., ntk: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ComputeValueAndGradRequest(_message.Message):
    __slots__ = ("architecture_id", "x1", "x2", "get", "nngp_cotangent", "ntk_cotangent", "hyper_parameters", "mask_constant", "pattern1", "pattern2")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    NNGP_COTANGENT_FIELD_NUMBER: _ClassVar[int]
    NTK_COTANGENT_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MASK_CONSTANT_FIELD_NUMBER: _ClassVar[int]
    PATTERN1_FIELD_NUMBER: _ClassVar[int]
    PATTERN2_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    x1: _tensor_pb2.Tensor
    x2: _tensor_pb2.Tensor
    get: _containers.RepeatedScalarFieldContainer[KernelKind]
    nngp_cotangent: _tensor_pb2.Tensor
    ntk_cotangent: _tensor_pb2.Tensor
    hyper_parameters: _containers.RepeatedScalarFieldContainer[str]
    mask_constant: float
    pattern1: _tensor_pb2.Tensor
    pattern2: _tensor_pb2.Tensor
    def __init__(self, architecture_id: _Optional[str] = ..., x1: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., x2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., get: _Optional[_Iterable[_Union[KernelKind, str]]] = ..., nngp_cotangent: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., ntk_cotangent: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., hyper_parameters: _Optional[_Iterable[str]] = ..., mask_constant: _Optional[float] = ..., pattern1: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., pattern2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ComputeValueAndGradResponse(_message.Message):
    __slots__ = ("nngp", "ntk", "grad_x1", "grad_x2", "hyper_parameter_grads")
    class HyperParameterGradsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NNGP_FIELD_NUMBER: _ClassVar[int]
    NTK_FIELD_NUMBER: _ClassVar[int]
    GRAD_X1_FIELD_NUMBER: _ClassVar[int]
    GRAD_X2_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETER_GRADS_FIELD_NUMBER: _ClassVar[int]
    nngp: _tensor_pb2.Tensor
    ntk: _tensor_pb2.Tensor
    grad_x1: _tensor_pb2.Tensor
    grad_x2: _tensor_pb2.Tensor
    hyper_parameter_grads: _containers.ScalarMap[str, float]
    def __init__(self, nngp: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., ntk: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., grad_x1: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., grad_x2: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., hyper_parameter_grads: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ComputeKernelBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ComputeKernelRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ComputeKernelRequest, _Mapping]]] = ...) -> None: ...

class ComputeKernelBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ComputeKernelResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ComputeKernelResponse, _Mapping]]] = ...) -> None: ...

class StreamKernelHeader(_message.Message):
    __slots__ = ("architecture_id", "get", "dtype", "x1_shape", "x2_shape", "tile_size", "tiles", "plan_only", "mask_constant", "patterns")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    X1_SHAPE_FIELD_NUMBER: _ClassVar[int]
    X2_SHAPE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    PLAN_ONLY_FIELD_NUMBER: _ClassVar[int]
    MASK_CONSTANT_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    get: _containers.RepeatedScalarFieldContainer[KernelKind]
    dtype: _tensor_pb2.Dtype
    x1_shape: _containers.RepeatedScalarFieldContainer[int]
    x2_shape: _containers.RepeatedScalarFieldContainer[int]
    tile_size: int
    tiles: _containers.RepeatedCompositeFieldContainer[TileIndex]
    plan_only: bool
    mask_constant: float
    patterns: bool
    def __init__(self, architecture_id: _Optional[str] = ..., get: _Optional[_Iterable[_Union[KernelKind, str]]] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., x1_shape: _Optional[_Iterable[int]] = ..., x2_shape: _Optional[_Iterable[int]] = ..., tile_size: _Optional[int] = ..., tiles: _Optional[_Iterable[_Union[TileIndex, _Mapping]]] = ..., plan_only: bool = ..., mask_constant: _Optional[float] = ..., patterns: bool = ...) -> None: ...

class TileIndex(_message.Message):
    __slots__ = ("row", "col")
    ROW_FIELD_NUMBER: _ClassVar[int]
    COL_FIELD_NUMBER: _ClassVar[int]
    row: int
    col: int
    def __init__(self, row: _Optional[int] = ..., col: _Optional[int] = ...) -> None: ...

class StreamKernelPlan(_message.Message):
    __slots__ = ("tile_size", "grid_rows", "grid_cols", "mirrored", "tiles", "kernel_shape", "tile_bytes", "position_pairs")
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    MIRRORED_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SHAPE_FIELD_NUMBER: _ClassVar[int]
    TILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    POSITION_PAIRS_FIELD_NUMBER: _ClassVar[int]
    tile_size: int
    grid_rows: int
    grid_cols: int
    mirrored: bool
    tiles: int
    kernel_shape: _containers.RepeatedScalarFieldContainer[int]
    tile_bytes: int
    position_pairs: bool
    def __init__(self, tile_size: _Optional[int] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., mirrored: bool = ..., tiles: _Optional[int] = ..., kernel_shape: _Optional[_Iterable[int]] = ..., tile_bytes: _Optional[int] = ..., position_pairs: bool = ...) -> None: ...

class InputChunk(_message.Message):
    __slots__ = ("slot", "offset", "data")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    slot: InputSlot
    offset: int
    data: bytes
    def __init__(self, slot: _Optional[_Union[InputSlot, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StreamKernelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: StreamKernelHeader
    chunk: InputChunk
    def __init__(self, header: _Optional[_Union[StreamKernelHeader, _Mapping]] = ..., chunk: _Optional[_Union[InputChunk, _Mapping]] = ...) -> None: ...

class KernelTile(_message.Message):
    __slots__ = ("kind", "row_start", "col_start", "values")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    COL_START_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    kind: KernelKind
    row_start: int
    col_start: int
    values: _tensor_pb2.Tensor
    def __init__(self, kind: _Optional[_Union[KernelKind, str]] = ..., row_start: _Optional[int] = ..., col_start: _Optional[int] = ..., values: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class StreamKernelResponse(_message.Message):
    __slots__ = ("tile", "plan", "tile_done")
    TILE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TILE_DONE_FIELD_NUMBER: _ClassVar[int]
    tile: KernelTile
    plan: StreamKernelPlan
    tile_done: TileIndex
    def __init__(self, tile: _Optional[_Union[KernelTile, _Mapping]] = ..., plan: _Optional[_Union[StreamKernelPlan, _Mapping]] = ..., tile_done: _Optional[_Union[TileIndex, _Mapping]] = ...) -> None: ...
