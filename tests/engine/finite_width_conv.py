"""Finite-width ConvLocal and ConvTranspose, written from their definitions (not from the
engine's rules), in neural-tangents' parameterizations (see finite_width.py):
  ConvLocal:     every output position q has its own weights W_q (C_in |F| x C_out) and bias
                 b_q; z_q = W_std / sqrt(C_in |F|) patch_q(x) W_q + b_std b_q  (ntk).
  ConvTranspose: z = W_std / sqrt(C_in |F|) lax.conv_transpose(x, W) + b_std b, W and b
                 shared over positions; CIRCULAR is the VALID output with entry j added to
                 output position (j - max(f - s, 0) // 2) mod (n s), per dimension.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ntkserve.v1 import architecture_pb2 as pb

from tests.engine.finite_width import Apply, Init, _circular

ConvMessage = pb.ConvLocal | pb.ConvTranspose


def _common(layer: ConvMessage) -> tuple[list[int], list[int], float, bool, float, bool, int]:
    window = list(layer.filter_shape)
    strides = list(layer.strides) or [1] * len(window)
    w_std = layer.w_std if layer.HasField("w_std") else 1.0
    has_bias = layer.HasField("b_std")
    b_std = layer.b_std if has_bias else 0.0
    standard = layer.parameterization == pb.PARAMETERIZATION_STANDARD
    out = layer.out_chan * ((layer.s_out or 1) if standard else 1)
    return window, strides, w_std, has_bias, b_std, standard, out


def _numbers(d: int) -> tuple[str, str, str]:
    spec = "N" + "DHW"[3 - d :] + "C"
    return spec, "DHW"[3 - d :] + "IO", spec


def _padding_name(padding: int) -> str:
    return {pb.PADDING_SAME: "SAME", pb.PADDING_CIRCULAR: "CIRCULAR"}.get(padding, "VALID")


def _affine(
    z: jax.Array, b: jax.Array | None, fan_in: int, w_std: float, b_std: float, layer: Any
) -> jax.Array:
    """The parameterization's scaling of a linear map z = x W (W ~ N(0, 1) in ntk)."""
    if layer.parameterization == pb.PARAMETERIZATION_STANDARD:
        z = z / math.sqrt(layer.s_in or 1)
        return z if b is None else z + b
    z = w_std / math.sqrt(fan_in) * z
    return z if b is None else z + b_std * b


def _standard_init(
    w: jax.Array, b: jax.Array | None, fan_in: int, w_std: float, b_std: float, layer: Any
) -> tuple[jax.Array, jax.Array | None]:
    if layer.parameterization != pb.PARAMETERIZATION_STANDARD:
        return w, b
    w = w * w_std / math.sqrt(fan_in / (layer.s_in or 1))
    return w, None if b is None else b * b_std


class _PerPositionInit:
    """ConvLocal's init: it draws weights for each output position, so it needs the layer's
    input (the example `finite_width._serial` passes to inits that set `takes_example`)."""

    takes_example = True

    def __init__(self, layer: pb.ConvLocal, patches: Any) -> None:
        self.layer = layer
        self.patches = patches

    def __call__(self, key: jax.Array, n_in: int, example: jax.Array | None = None) -> Any:
        if example is None:
            raise ValueError("ConvLocal's finite-width init needs an example input")
        window, _, w_std, has_bias, b_std, _, out = _common(self.layer)
        positions = tuple(self.patches(example).shape[1:-1])
        fan_in = n_in * math.prod(window)
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (*positions, fan_in, out), jnp.float32)
        b = jax.random.normal(kb, (*positions, out), jnp.float32) if has_bias else None
        return out, _standard_init(w, b, fan_in, w_std, b_std, self.layer)


def conv_local(layer: pb.ConvLocal) -> tuple[Init, Apply]:
    window, strides, w_std, _, b_std, _, _ = _common(layer)
    mode = _padding_name(layer.padding)
    d = len(window)

    def patches(x: jax.Array) -> jax.Array:
        """(N, *out, C_in |F|): the inputs each output position sees."""
        padding = mode
        if mode == "CIRCULAR":
            x, padding = _circular(x, window, strides), "VALID"
        return jax.lax.conv_general_dilated_patches(
            x, window, strides, padding, dimension_numbers=_numbers(d)
        )

    def apply(params: Any, x: jax.Array) -> jax.Array:
        w, b = params
        p = patches(x)
        positions = "abc"[:d]
        z = jnp.einsum(f"n{positions}i,{positions}io->n{positions}o", p, w)
        return _affine(z, b, p.shape[-1], w_std, b_std, layer)

    return _PerPositionInit(layer, patches), apply


def _wrap(z: jax.Array, axis: int, period: int, offset: int) -> jax.Array:
    """Output position p gets the sum of z[j] over every j = p + offset + m * period."""
    length = z.shape[axis]
    fold = np.zeros((period, length), np.float32)
    for p in range(period):
        for j in range(length):
            if (j - offset - p) % period == 0:
                fold[p, j] = 1.0
    return jnp.moveaxis(jnp.tensordot(fold, z, axes=([1], [axis])), 0, axis)


def conv_transpose(layer: pb.ConvTranspose) -> tuple[Init, Apply]:
    window, strides, w_std, has_bias, b_std, _, out = _common(layer)
    mode = _padding_name(layer.padding)
    d = len(window)

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        kw, kb = jax.random.split(key)
        fan_in = n_in * math.prod(window)
        w = jax.random.normal(kw, (*window, n_in, out), jnp.float32)
        b = jax.random.normal(kb, (out,), jnp.float32) if has_bias else None
        return out, _standard_init(w, b, fan_in, w_std, b_std, layer)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        w, b = params
        padding = "VALID" if mode == "CIRCULAR" else mode
        z = jax.lax.conv_transpose(x, w, strides, padding, dimension_numbers=_numbers(d))
        if mode == "CIRCULAR":
            for i, (n, f, s) in enumerate(zip(x.shape[1:-1], window, strides, strict=True)):
                z = _wrap(z, 1 + i, n * s, max(f - s, 0) // 2)
        return _affine(z, b, x.shape[-1] * math.prod(window), w_std, b_std, layer)

    return init, apply
