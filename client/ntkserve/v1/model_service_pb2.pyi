from ntkserve.v1 import kernel_service_pb2 as _kernel_service_pb2
from ntkserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Posterior(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POSTERIOR_UNSPECIFIED: _ClassVar[Posterior]
    POSTERIOR_NNGP: _ClassVar[Posterior]
    POSTERIOR_NTK: _ClassVar[Posterior]
    POSTERIOR_NTKGP: _ClassVar[Posterior]

class Covariance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COVARIANCE_UNSPECIFIED: _ClassVar[Covariance]
    COVARIANCE_MARGINAL: _ClassVar[Covariance]
    COVARIANCE_FULL: _ClassVar[Covariance]
POSTERIOR_UNSPECIFIED: Posterior
POSTERIOR_NNGP: Posterior
POSTERIOR_NTK: Posterior
POSTERIOR_NTKGP: Posterior
COVARIANCE_UNSPECIFIED: Covariance
COVARIANCE_MARGINAL: Covariance
COVARIANCE_FULL: Covariance

class FitHeader(_message.Message):
    __slots__ = ("architecture_id", "get", "dtype", "x_train_shape", "y_train_shape", "diag_reg", "diag_reg_absolute_scale", "learning_rate", "tile_size")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    X_TRAIN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    Y_TRAIN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_ABSOLUTE_SCALE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    get: _kernel_service_pb2.KernelKind
    dtype: _tensor_pb2.Dtype
    x_train_shape: _containers.RepeatedScalarFieldContainer[int]
    y_train_shape: _containers.RepeatedScalarFieldContainer[int]
    diag_reg: float
    diag_reg_absolute_scale: bool
    learning_rate: float
    tile_size: int
    def __init__(self, architecture_id: _Optional[str] = ..., get: _Optional[_Union[_kernel_service_pb2.KernelKind, str]] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., x_train_shape: _Optional[_Iterable[int]] = ..., y_train_shape: _Optional[_Iterable[int]] = ..., diag_reg: _Optional[float] = ..., diag_reg_absolute_scale: bool = ..., learning_rate: _Optional[float] = ..., tile_size: _Optional[int] = ...) -> None: ...

class FitRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: FitHeader
    chunk: _kernel_service_pb2.InputChunk
    def __init__(self, header: _Optional[_Union[FitHeader, _Mapping]] = ..., chunk: _Optional[_Union[_kernel_service_pb2.InputChunk, _Mapping]] = ...) -> None: ...

class Solve(_message.Message):
    __slots__ = ("method", "jitter", "condition")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    method: str
    jitter: float
    condition: float
    def __init__(self, method: _Optional[str] = ..., jitter: _Optional[float] = ..., condition: _Optional[float] = ...) -> None: ...

class ModelRecord(_message.Message):
    __slots__ = ("model_id", "architecture_id", "get", "dtype", "x_train_shape", "y_train_shape", "diag_reg", "diag_reg_absolute_scale", "learning_rate", "solves", "log_marginal_likelihood", "create_time", "stored_bytes")
    class SolvesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Solve
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Solve, _Mapping]] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    X_TRAIN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    Y_TRAIN_SHAPE_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_ABSOLUTE_SCALE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SOLVES_FIELD_NUMBER: _ClassVar[int]
    LOG_MARGINAL_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    architecture_id: str
    get: _kernel_service_pb2.KernelKind
    dtype: _tensor_pb2.Dtype
    x_train_shape: _containers.RepeatedScalarFieldContainer[int]
    y_train_shape: _containers.RepeatedScalarFieldContainer[int]
    diag_reg: float
    diag_reg_absolute_scale: bool
    learning_rate: float
    solves: _containers.MessageMap[str, Solve]
    log_marginal_likelihood: float
    create_time: float
    stored_bytes: int
    def __init__(self, model_id: _Optional[str] = ..., architecture_id: _Optional[str] = ..., get: _Optional[_Union[_kernel_service_pb2.KernelKind, str]] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., x_train_shape: _Optional[_Iterable[int]] = ..., y_train_shape: _Optional[_Iterable[int]] = ..., diag_reg: _Optional[float] = ..., diag_reg_absolute_scale: bool = ..., learning_rate: _Optional[float] = ..., solves: _Optional[_Mapping[str, Solve]] = ..., log_marginal_likelihood: _Optional[float] = ..., create_time: _Optional[float] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class FitProgress(_message.Message):
    __slots__ = ("phase", "tiles_done", "tiles")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    TILES_DONE_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    phase: str
    tiles_done: int
    tiles: int
    def __init__(self, phase: _Optional[str] = ..., tiles_done: _Optional[int] = ..., tiles: _Optional[int] = ...) -> None: ...

class FitResponse(_message.Message):
    __slots__ = ("progress", "model")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    progress: FitProgress
    model: ModelRecord
    def __init__(self, progress: _Optional[_Union[FitProgress, _Mapping]] = ..., model: _Optional[_Union[ModelRecord, _Mapping]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model_id", "x_test", "t", "get", "covariance")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    X_TEST_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    x_test: _tensor_pb2.Tensor
    t: _containers.RepeatedScalarFieldContainer[float]
    get: Posterior
    covariance: Covariance
    def __init__(self, model_id: _Optional[str] = ..., x_test: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., t: _Optional[_Iterable[float]] = ..., get: _Optional[_Union[Posterior, str]] = ..., covariance: _Optional[_Union[Covariance, str]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("mean", "covariance", "solve")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    SOLVE_FIELD_NUMBER: _ClassVar[int]
    mean: _tensor_pb2.Tensor
    covariance: _tensor_pb2.Tensor
    solve: Solve
    def __init__(self, mean: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., covariance: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., solve: _Optional[_Union[Solve, _Mapping]] = ...) -> None: ...

class PredictStreamHeader(_message.Message):
    __slots__ = ("model_id", "dtype", "x_test_shape", "t", "get", "covariance", "block_rows")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    X_TEST_SHAPE_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ROWS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dtype: _tensor_pb2.Dtype
    x_test_shape: _containers.RepeatedScalarFieldContainer[int]
    t: _containers.RepeatedScalarFieldContainer[float]
    get: Posterior
    covariance: Covariance
    block_rows: int
    def __init__(self, model_id: _Optional[str] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., x_test_shape: _Optional[_Iterable[int]] = ..., t: _Optional[_Iterable[float]] = ..., get: _Optional[_Union[Posterior, str]] = ..., covariance: _Optional[_Union[Covariance, str]] = ..., block_rows: _Optional[int] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PredictStreamHeader
    chunk: _kernel_service_pb2.InputChunk
    def __init__(self, header: _Optional[_Union[PredictStreamHeader, _Mapping]] = ..., chunk: _Optional[_Union[_kernel_service_pb2.InputChunk, _Mapping]] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("row_start", "mean", "covariance", "solve")
    ROW_START_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    COVARIANCE_FIELD_NUMBER: _ClassVar[int]
    SOLVE_FIELD_NUMBER: _ClassVar[int]
    row_start: int
    mean: _tensor_pb2.Tensor
    covariance: _tensor_pb2.Tensor
    solve: Solve
    def __init__(self, row_start: _Optional[int] = ..., mean: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., covariance: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., solve: _Optional[_Union[Solve, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: ModelRecord
    def __init__(self, record: _Optional[_Union[ModelRecord, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[ModelRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[ModelRecord, _Mapping]]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarginalLikelihoodRequest(_message.Message):
    __slots__ = ("architecture_id", "x_train", "y_train", "get", "diag_reg", "diag_reg_absolute_scale", "hyper_parameters", "diag_reg_grad")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    X_TRAIN_FIELD_NUMBER: _ClassVar[int]
    Y_TRAIN_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_ABSOLUTE_SCALE_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_GRAD_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    x_train: _tensor_pb2.Tensor
    y_train: _tensor_pb2.Tensor
    get: Posterior
    diag_reg: float
    diag_reg_absolute_scale: bool
    hyper_parameters: _containers.RepeatedScalarFieldContainer[str]
    diag_reg_grad: bool
    def __init__(self, architecture_id: _Optional[str] = ..., x_train: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y_train: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., get: _Optional[_Union[Posterior, str]] = ..., diag_reg: _Optional[float] = ..., diag_reg_absolute_scale: bool = ..., hyper_parameters: _Optional[_Iterable[str]] = ..., diag_reg_grad: bool = ...) -> None: ...

class MarginalLikelihoodResponse(_message.Message):
    __slots__ = ("log_marginal_likelihood", "solve", "hyper_parameter_grads", "diag_reg_grad")
    class HyperParameterGradsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LOG_MARGINAL_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    SOLVE_FIELD_NUMBER: _ClassVar[int]
    HYPER_PARAMETER_GRADS_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_GRAD_FIELD_NUMBER: _ClassVar[int]
    log_marginal_likelihood: float
    solve: Solve
    hyper_parameter_grads: _containers.ScalarMap[str, float]
    diag_reg_grad: float
    def __init__(self, log_marginal_likelihood: _Optional[float] = ..., solve: _Optional[_Union[Solve, _Mapping]] = ..., hyper_parameter_grads: _Optional[_Mapping[str, float]] = ..., diag_reg_grad: _Optional[float] = ...) -> None: ...

class TunedParameter(_message.Message):
    __slots__ = ("path", "lower", "upper")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    path: str
    lower: float
    upper: float
    def __init__(self, path: _Optional[str] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ...) -> None: ...

class TuneRequest(_message.Message):
    __slots__ = ("architecture_id", "x_train", "y_train", "get", "diag_reg", "diag_reg_absolute_scale", "parameters", "steps", "step_size")
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    X_TRAIN_FIELD_NUMBER: _ClassVar[int]
    Y_TRAIN_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_FIELD_NUMBER: _ClassVar[int]
    DIAG_REG_ABSOLUTE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    architecture_id: str
    x_train: _tensor_pb2.Tensor
    y_train: _tensor_pb2.Tensor
    get: Posterior
    diag_reg: float
    diag_reg_absolute_scale: bool
    parameters: _containers.RepeatedCompositeFieldContainer[TunedParameter]
    steps: int
    step_size: float
    def __init__(self, architecture_id: _Optional[str] = ..., x_train: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y_train: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., get: _Optional[_Union[Posterior, str]] = ..., diag_reg: _Optional[float] = ..., diag_reg_absolute_scale: bool = ..., parameters: _Optional[_Iterable[_Union[TunedParameter, _Mapping]]] = ..., steps: _Optional[int] = ..., step_size: _Optional[float] = ...) -> None: ...

class TuneResponse(_message.Message):
    __slots__ = ("values", "log_marginal_likelihood", "architecture_id", "trace", "solve")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LOG_MARGINAL_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    SOLVE_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    log_marginal_likelihood: float
    architecture_id: str
    trace: _containers.RepeatedScalarFieldContainer[float]
    solve: Solve
    def __init__(self, values: _Optional[_Mapping[str, float]] = ..., log_marginal_likelihood: _Optional[float] = ..., architecture_id: _Optional[str] = ..., trace: _Optional[_Iterable[float]] = ..., solve: _Optional[_Union[Solve, _Mapping]] = ...) -> None: ...
