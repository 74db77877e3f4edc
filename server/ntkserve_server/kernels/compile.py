"""`kernel_fn(arch)`: compiles an Architecture into a kernel function (a fold of rules).

The returned `KernelFn` is pure JAX: differentiable with jax.grad / jax.vjp, jittable.
Hyper-parameters (W_std, b_std, a, b, ...) are an argument (`params`), not constants, so a
sweep over them reuses one compilation and gradients with respect to them are available.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_server.kernels.canonical import architecture_id, canonicalize
from ntkserve_server.kernels.errors import InputError
from ntkserve_server.kernels.kernel import Kernel, input_kernel
from ntkserve_server.kernels.rows import Rule
from ntkserve_server.kernels.table import LAYERS

KINDS = ("nngp", "ntk")
Params = tuple[Mapping[str, float | Array], ...]


def parse_get(get: str | Sequence[str]) -> tuple[str, ...]:
    """ "ntk" -> ("ntk",); ("nngp", "ntk") stays. Raises InputError for anything else."""
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names:
        raise InputError("get", "name at least one of 'nngp', 'ntk'")
    for name in names:
        if name not in KINDS:
            raise InputError("get", f"unknown kernel {name!r}; expected 'nngp' or 'ntk'")
    if len(set(names)) != len(names):
        raise InputError("get", f"names a kernel twice: {names}")
    return names


def _as_proto(arch: Any) -> pb.Architecture:
    if isinstance(arch, pb.Architecture):
        return arch
    if hasattr(arch, "to_proto"):
        return arch.to_proto()  # type: ignore[no-any-return]
    raise TypeError(f"expected an ntkserve spec or an ntkserve.v1.Architecture, got {type(arch)}")


class KernelFn:
    """The analytic NNGP/NTK of one architecture. Build with `kernel_fn(arch)`."""

    def __init__(self, arch: Any) -> None:
        self.architecture = canonicalize(_as_proto(arch))
        self.id = architecture_id(self.architecture)
        rules: list[Rule] = []
        params: list[Mapping[str, float | Array]] = []
        for layer in self.architecture.layers:
            kind = str(layer.WhichOneof("layer"))
            row, message = LAYERS[kind], getattr(layer, kind)
            rules.append(row.build(message))
            params.append(row.hyper_values(message))
        self._rules = tuple(rules)
        self.params: Params = tuple(params)

    def check_inputs(self, shape1: Sequence[int], shape2: Sequence[int] | None, dtype: Any) -> None:
        """Raises InputError when inputs of these shapes and dtype cannot be used."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise InputError("x1.dtype", f"must be float32 or float64, got {dtype}")
        if dtype == np.float64 and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
            raise InputError(
                "x1.dtype",
                "float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', "
                "True)); refusing to compute it silently in float32",
            )
        for name, shape in (("x1", shape1), ("x2", shape2)):
            if shape is None:
                continue
            if len(shape) != 2:
                raise InputError(
                    f"{name}.shape",
                    f"expected (batch, features) for a network of dense layers, "
                    f"got shape {list(shape)}",
                )
            if shape[0] < 1 or shape[1] < 1:
                raise InputError(
                    f"{name}.shape", f"batch and features must be >= 1, got {list(shape)}"
                )
        if shape2 is not None and tuple(shape1[1:]) != tuple(shape2[1:]):
            raise InputError(
                "x2.shape", f"features {list(shape2[1:])} differ from x1's {list(shape1[1:])}"
            )

    def apply(
        self, params: Params, x1: Array, x2: Array | None, get: tuple[str, ...]
    ) -> tuple[Array, ...]:
        """The kernels named in `get` (in that order): the pure function to jit or differentiate."""
        dtype = x1.dtype
        cast = [{n: jnp.asarray(v, dtype) for n, v in p.items()} for p in params]
        k: Kernel = input_kernel(x1, x2, with_ntk="ntk" in get)
        for rule, hp in zip(self._rules, cast, strict=True):
            k = rule(k, hp)
        return tuple(getattr(k, name) for name in get)

    def __call__(
        self,
        x1: Any,
        x2: Any = None,
        get: str | Sequence[str] = "ntk",
        params: Params | None = None,
    ) -> Array | tuple[Array, ...]:
        names = parse_get(get)
        self.check_inputs(np.shape(x1), None if x2 is None else np.shape(x2), _dtype(x1))
        if x2 is not None and _dtype(x2) != _dtype(x1):
            raise InputError("x2.dtype", f"{_dtype(x2)} differs from x1's {_dtype(x1)}")
        out = self.apply(
            self.params if params is None else params,
            jnp.asarray(x1),
            None if x2 is None else jnp.asarray(x2),
            names,
        )
        return out[0] if isinstance(get, str) else out


def _dtype(x: Any) -> np.dtype[Any]:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def kernel_fn(arch: Any) -> KernelFn:
    """Compiles a spec (anything with `.to_proto()`) or an `ntkserve.v1.Architecture`."""
    return KernelFn(arch)
