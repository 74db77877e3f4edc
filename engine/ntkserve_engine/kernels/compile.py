"""`kernel_fn(arch)`: compiles an Architecture into a kernel function (a fold of rules).

The returned `KernelFn` is pure JAX: differentiable with jax.grad / jax.vjp, jittable.
Hyper-parameters (W_std, b_std, a, b, ...) are an argument (`params`), not constants, so a
sweep over them reuses one compilation and gradients with respect to them are available.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from ntkserve import kinds
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.canonical import (
    applications,
    architecture_id,
    canonicalize,
    every_layer,
    topology_id,
)
from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.kernels.jitted import is_traced, jitted_apply
from ntkserve_engine.kernels.kernel import Kernel, input_kernel
from ntkserve_engine.kernels.symmetry import mirror_upper, symmetrized
from ntkserve_engine.kernels.tree import build_sequence
from ntkserve_engine.kernels.windows import ShapeProblem

KINDS = kinds.NAMES  # public: ntkserve_engine.KINDS
Params = tuple[Any, ...]  # per top-level layer: a dict of floats, or nested tuples of them


def parse_get(get: str | Sequence[str]) -> tuple[str, ...]:
    """ "ntk" -> ("ntk",); ("nngp", "ntk") stays. Raises InputError("get", ...) for anything
    else (`ntkserve.kinds.from_names`, in the engine's error)."""
    try:
        return kinds.from_names(get)
    except kinds.KindError as e:
        raise InputError(e.field, e.problem) from None


def _as_proto(arch: Any) -> pb.Architecture:
    if isinstance(arch, pb.Architecture):
        return arch
    if hasattr(arch, "to_proto"):
        return arch.to_proto()  # type: ignore[no-any-return]
    raise TypeError(f"expected an ntkserve spec or an ntkserve.v1.Architecture, got {type(arch)}")


Shape = tuple[int, ...]
# Input positions whose walk through the network each KernelFn remembers (least recently
# used dropped): a call of shapes seen before is checked in O(1), wherever it comes in (on
# the server's event loop too); a new shape costs one walk, O(structure).
SHAPES_REMEMBERED = 64


def batch_shape(shape: Sequence[int], field: str) -> Shape:
    """The rank rule of every input, in one wording wherever a shape arrives (an in-process
    call, a ComputeKernel tensor, a StreamKernel header): (batch, *spatial, channels), every
    size >= 1. InputError otherwise."""
    checked = tuple(int(s) for s in shape)
    if len(checked) < 2 or min(checked) < 1:
        raise InputError(
            field,
            f"expected (batch, *spatial, channels) with every size >= 1, got {list(checked)}",
        )
    return checked


@dataclasses.dataclass(frozen=True)
class CheckedShapes:
    """Input shapes and dtype that `KernelFn.check_inputs` found to fit its network, with the
    kernel's shape they give: checked once where a call comes in, then passed on, so later
    stages neither check nor shape again."""

    x1: Shape
    x2: Shape | None
    dtype: np.dtype[Any]
    patterns: tuple[Shape | None, Shape | None]
    kernel: Shape


class KernelFn:
    """The analytic NNGP/NTK of one architecture. Build with `kernel_fn(arch)`."""

    def __init__(self, arch: Any, *, force_position_pairs: bool = False) -> None:
        self.architecture = canonicalize(_as_proto(arch))
        self.id = architecture_id(self.architecture)
        # Shared by networks that differ only in hyper-parameter values: one compilation.
        self.topology_id = topology_id(self.architecture) + (
            "-pairs" if force_position_pairs else ""
        )
        self._network = build_sequence(self.architecture.layers, "architecture.layers")
        self.params: Params = self._network.params
        # The path of each hyper-parameter, in the order of jax.tree.leaves(params).
        self.hyper_parameter_paths: tuple[str, ...] = tuple(jax.tree.leaves(self._network.names))
        # Decided once per network: only pooling over positions pays for the covariance of
        # every pair of positions; a Flatten readout needs same-position covariances only.
        self.position_pairs = force_position_pairs or self._network.needs_position_pairs
        # Aggregate layers read each example's graph, sent with the inputs.
        self.uses_patterns = any(
            layer.WhichOneof("layer") == "aggregate"
            for layer in every_layer(self.architecture.layers)
        )
        self._walks: collections.OrderedDict[Shape, Shape | str] = collections.OrderedDict()
        self._walks_lock = threading.Lock()

    @functools.cached_property
    def applications(self) -> int:
        """Layer applications per kernel entry: each layer (and join) once, a repeat's layer
        n times, nested repeats multiplied (`canonical.applications`), counted once when
        first asked (canonicalize has checked it is at most `canonical.MAX_APPLICATIONS`). The
        compute of a kernel grows with it (times its entries and positions)."""
        return applications(self.architecture.layers)

    def check_inputs(
        self,
        shape1: Sequence[int],
        shape2: Sequence[int] | None,
        dtype: Any,
        patterns: tuple[Sequence[int] | None, Sequence[int] | None] = (None, None),
    ) -> CheckedShapes:
        """The shapes, once inputs of these shapes and dtype (and Aggregate patterns of these
        shapes) are known to fit this network, with the kernel's shape; InputError if not."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise InputError("x1.dtype", f"must be float32 or float64, got {dtype}")
        if dtype == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
            raise InputError(
                "x1.dtype",
                "float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', "
                "True)); refusing to compute it silently in float32",
            )
        x1 = batch_shape(shape1, "x1.shape")
        x2 = None if shape2 is None else batch_shape(shape2, "x2.shape")
        if x2 is not None and x1[1:] != x2[1:]:
            raise InputError("x2.shape", f"features {list(x2[1:])} differ from x1's {list(x1[1:])}")
        kernel = self.kernel_shape(x1, x2)
        p1, p2 = (None if p is None else tuple(int(s) for s in p) for p in patterns)
        self._check_patterns(x1, x2, p1, p2)
        return CheckedShapes(x1, x2, dtype, (p1, p2), kernel)

    def _check_patterns(
        self,
        shape1: Sequence[int],
        shape2: Sequence[int] | None,
        pattern1: Sequence[int] | None,
        pattern2: Sequence[int] | None,
    ) -> None:
        if not self.uses_patterns:
            for name, p in (("pattern1", pattern1), ("pattern2", pattern2)):
                if p is not None:
                    raise InputError(name, "given, but the architecture has no Aggregate layer")
            return
        for name, p, x in (("pattern1", pattern1, shape1), ("pattern2", pattern2, shape2)):
            if x is None:
                if p is not None:
                    raise InputError(name, "given without x2 (x2 absent: x1's pattern serves)")
                continue
            spatial = list(x[1:-1])
            want = [x[0], *spatial, *spatial]
            if p is None:
                raise InputError(
                    name,
                    f"is required: the network has an Aggregate layer, which needs each "
                    f"example's graph, shaped {want}",
                )
            if list(p) != want:
                raise InputError(
                    f"{name}.shape", f"must be (N, *spatial, *spatial) = {want}, got {list(p)}"
                )

    def kernel_shape(self, shape1: Sequence[int], shape2: Sequence[int] | None) -> tuple[int, ...]:
        """(N1, N2, *P): the positions left at the output, once (or twice with position pairs)."""
        spatial = self._walk(tuple(int(s) for s in shape1[1:-1]))
        if isinstance(spatial, str):
            raise InputError("x1.shape", f"inputs of shape {list(shape1)} do not fit: {spatial}")
        n2 = shape1[0] if shape2 is None else shape2[0]
        return (shape1[0], n2, *spatial, *(spatial if self.position_pairs else ()))

    def _walk(self, positions: Shape) -> Shape | str:
        """The positions the network leaves for these input positions, or why they do not
        fit: walked once (O(structure): a repeat loops after one pass), then remembered."""
        with self._walks_lock:
            found = self._walks.get(positions)
            if found is not None:
                self._walks.move_to_end(positions)
                return found
        try:
            found, _ = self._network.spatial(positions)
        except ShapeProblem as e:
            found = str(e)
        with self._walks_lock:
            self._walks[positions] = found
            while len(self._walks) > SHAPES_REMEMBERED:
                self._walks.popitem(last=False)
        return found

    def to_host(self, out: Sequence[Any], symmetric: bool) -> tuple[np.ndarray[Any, Any], ...]:
        """A compiled program's kernels as numpy arrays; exactly symmetric ones when
        `symmetric` (x2 = None; see `symmetry.mirror_upper`)."""
        arrays = tuple(np.asarray(k) for k in out)
        if not symmetric:
            return arrays
        return tuple(mirror_upper(a, self.position_pairs) for a in arrays)

    def apply(
        self,
        params: Params,
        x1: Array,
        x2: Array | None,
        get: tuple[str, ...],
        mask_constant: Array | float | None = None,
        pattern1: Array | None = None,
        pattern2: Array | None = None,
    ) -> tuple[Array, ...]:
        """The kernels named in `get` (in that order): the pure function to jit or differentiate.

        `mask_constant`: input entries equal to it are masked (see `masking.py`); it may be a
        traced scalar, so one program serves every constant (None is another program).
        `pattern1`, `pattern2`: the graphs of x1's and x2's examples, for Aggregate layers."""
        dtype = x1.dtype
        k: Kernel = input_kernel(
            x1,
            x2,
            with_ntk="ntk" in get,
            position_pairs=self.position_pairs,
            mask_constant=mask_constant,
            patterns=(pattern1, pattern2),
        )
        k = self._network.apply(k, jax.tree.map(lambda v: jnp.asarray(v, dtype), params))
        out = tuple(getattr(k, name) for name in get)
        return (
            tuple(symmetrized(a, len(k.spatial), k.position_pairs) for a in out)
            if k.symmetric
            else out
        )

    def __call__(
        self,
        x1: Any,
        x2: Any = None,
        get: str | Sequence[str] = "ntk",
        params: Params | None = None,
        mask_constant: float | None = None,
        pattern: tuple[Any, Any] | None = None,
    ) -> Array | tuple[Array, ...]:
        """The kernels named in `get` between x1 and x2 (x2 None: x1 with itself, exactly
        symmetric), as jax arrays: one array for a name, a tuple for a tuple of names.

        A jitted program (`jitted.py`: one per topology, shared with every network that differs
        only in hyper-parameter values), then for x2 None the upper triangle copied onto the
        lower one on the host (`mirror_upper`): the server's program and mirror, so the values
        are `ComputeKernel`'s bit for bit.

        Called with tracers (inside the caller's jax.jit, jax.vmap, jax.grad, ...), it calls the
        pure `apply` instead, which the caller's transformation compiles: traced values cannot
        be mirrored on the host, so x2 None is symmetrized in the graph
        (`symmetry.symmetrized`). The values agree with the direct call's to rounding (a few
        units in the last place), not bit for bit: each XLA program fuses (and contracts into
        FMAs) in its own way.
        `kfn.apply(kfn.params, x1, x2, get)` is that pure function, eager outside a
        transformation.

        `params`: the hyper-parameters as inputs (to differentiate or sweep them), shaped like
        `kfn.params` (the default): a tuple with one entry per top-level layer, a dict of its
        hyper-parameters by name ({} for a layer without any; a tuple of such entries for a
        parallel or a repeated serial), e.g. ({'w_std': 1.5, 'b_std': 0.05}, {}, {'w_std': 1.5}) for
        serial(Dense(512, W_std=1.5, b_std=0.05), Relu(), Dense(1, W_std=1.5)); each value a
        scalar. `kfn.hyper_parameter_paths` names the values in the order of
        jax.tree.leaves(kfn.params).
        `mask_constant`: input entries equal to it are masked (see `masking.py`).
        `pattern=(pattern1, pattern2)`: the graphs for Aggregate layers, as in neural-tangents
        (pattern2 None when x2 is None)."""
        names = parse_get(get)
        p1, p2 = (None, None) if pattern is None else pattern
        self.check_inputs(
            np.shape(x1),
            None if x2 is None else np.shape(x2),
            _dtype(x1),
            (None if p1 is None else np.shape(p1), None if p2 is None else np.shape(p2)),
        )
        if x2 is not None and _dtype(x2) != _dtype(x1):
            raise InputError("x2.dtype", f"{_dtype(x2)} differs from x1's {_dtype(x1)}")
        dtype = _dtype(x1)
        inputs = (
            self._checked_params(params),
            jnp.asarray(x1),
            None if x2 is None else jnp.asarray(x2),
            names,
            None if mask_constant is None else jnp.asarray(mask_constant, dtype),
            None if p1 is None else jnp.asarray(p1, dtype),
            None if p2 is None else jnp.asarray(p2, dtype),
        )
        out = self.apply(*inputs) if is_traced(inputs) else self._run(*inputs)
        return out[0] if isinstance(get, str) else out

    def _run(
        self,
        params: Params,
        x1: Array,
        x2: Array | None,
        get: tuple[str, ...],
        mask_constant: Array | None,
        pattern1: Array | None,
        pattern2: Array | None,
    ) -> tuple[Array, ...]:
        """`apply` on checked inputs outside any transformation: through `_program` (the
        topology's jitted program), then exactly symmetric for x2 None."""
        out = self._program()(
            params,
            x1,
            x2,
            get=get,
            mask_constant=mask_constant,
            pattern1=pattern1,
            pattern2=pattern2,
        )
        if x2 is not None:
            return tuple(out)
        return tuple(jnp.asarray(a) for a in self.to_host(out, symmetric=True))

    def _program(self) -> Callable[..., Sequence[Array]]:
        """What runs `apply` for a call: the topology's jitted program (a subclass may run
        `apply` itself, op by op)."""
        return jitted_apply(self)

    def _checked_params(self, params: Any) -> Params:
        """`params` when shaped like `self.params` with a scalar at every leaf (None: those)."""
        if params is None:
            return self.params
        want: Any = jax.tree.structure(self.params)
        if not isinstance(params, tuple) or want != jax.tree.structure(params):
            raise InputError(
                "params",
                f"must be shaped like kfn.params, a tuple with one dict of hyper-parameters "
                f"per top-level layer: {_brief(self.params)}; got {_brief(params)}",
            )
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            if np.ndim(leaf) != 0:
                where = jax.tree_util.keystr(path)
                raise InputError(
                    f"params{where}", f"must be a scalar, got shape {list(np.shape(leaf))}"
                )
        return params


def _brief(value: Any, limit: int = 200) -> str:
    """repr(value), cut to `limit` characters: enough to show a structure in an error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dtype(x: Any) -> np.dtype[Any]:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def kernel_fn(arch: Any) -> KernelFn:
    """Compiles a spec (anything with `.to_proto()`) or an `ntkserve.v1.Architecture`."""
    return KernelFn(arch)
