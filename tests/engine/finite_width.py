"""Finite-width networks built from the same specs, for Monte Carlo checks of the engine.

Written independently of the engine's rules: each layer is its literal definition (weights
drawn, matrices multiplied, activations applied), in the parameterizations of
neural-tangents' stax:
  ntk:      z = W_std / sqrt(n_in) W x + b_std b,     W, b ~ N(0, 1)
  standard: z = W x / sqrt(s_in) + b,  W ~ N(0, W_std^2 s_in / n_in), b ~ N(0, b_std^2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

Init = Callable[[jax.Array, int], tuple[int, Any]]
Apply = Callable[[Any, jax.Array], jax.Array]


def _dense(layer: pb.Dense) -> tuple[Init, Apply]:
    w_std = layer.w_std if layer.HasField("w_std") else 1.0
    has_bias = layer.HasField("b_std")
    b_std = layer.b_std if has_bias else 0.0
    standard = layer.parameterization == pb.PARAMETERIZATION_STANDARD
    s_in = layer.s_in or 1
    s_out = layer.s_out or 1
    out = layer.out_dim * (s_out if standard else 1)

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (n_in, out), jnp.float32)
        b = jax.random.normal(kb, (out,), jnp.float32) if has_bias else None
        if standard:
            w = w * w_std / jnp.sqrt(n_in / s_in)
            b = None if b is None else b * b_std
        return out, (w, b)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        w, b = params
        n_in = x.shape[-1]
        if standard:
            z = x @ w / jnp.sqrt(s_in)
            return z if b is None else z + b
        z = w_std / jnp.sqrt(n_in) * (x @ w)
        return z if b is None else z + b_std * b

    return init, apply


def _pad_mode(padding: int) -> str:
    return {pb.PADDING_SAME: "SAME", pb.PADDING_CIRCULAR: "CIRCULAR"}.get(padding, "VALID")


def _circular(x: jax.Array, window: list[int], strides: list[int]) -> jax.Array:
    """Wrap-pads the spatial axes as SAME would zero-pad them."""
    widths = [(0, 0)]
    for size, w, s in zip(x.shape[1:-1], window, strides, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + w - size, 0)
        widths.append((total // 2, total - total // 2))
    return jnp.pad(x, [*widths, (0, 0)], mode="wrap")


def _conv(layer: pb.Conv) -> tuple[Init, Apply]:
    window = list(layer.filter_shape)
    strides = list(layer.strides) or [1] * len(window)
    w_std = layer.w_std if layer.HasField("w_std") else 1.0
    has_bias = layer.HasField("b_std")
    b_std = layer.b_std if has_bias else 0.0
    standard = layer.parameterization == pb.PARAMETERIZATION_STANDARD
    s_in = layer.s_in or 1
    out = layer.out_chan * ((layer.s_out or 1) if standard else 1)
    mode = _pad_mode(layer.padding)
    d = len(window)
    spec = "N" + "DHW"[3 - d :] + "C"
    numbers = (spec, "DHW"[3 - d :] + "IO", spec)

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (*window, n_in, out), jnp.float32)
        b = jax.random.normal(kb, (out,), jnp.float32) if has_bias else None
        if standard:
            w = w * w_std / jnp.sqrt(n_in * math.prod(window) / s_in)
            b = None if b is None else b * b_std
        return out, (w, b)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        w, b = params
        padding = mode
        if mode == "CIRCULAR":
            x, padding = _circular(x, window, strides), "VALID"
        z = jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers)
        if standard:
            z = z / jnp.sqrt(s_in)
            return z if b is None else z + b
        z = w_std / jnp.sqrt(x.shape[-1] * math.prod(window)) * z
        return z if b is None else z + b_std * b

    return init, apply


def _pool(layer: pb.AvgPool | pb.SumPool) -> tuple[Init, Apply]:
    window = list(layer.window_shape)
    strides = list(layer.strides) or [1] * len(window)
    mode = _pad_mode(layer.padding)
    average = isinstance(layer, pb.AvgPool)
    by_counts = average and layer.normalize_edges and mode == "SAME"

    def apply(params: Any, x: jax.Array) -> jax.Array:
        dims, steps = (1, *window, 1), (1, *strides, 1)
        padding = mode
        if mode == "CIRCULAR":
            x, padding = _circular(x, window, strides), "VALID"
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, steps, padding)
        if by_counts:
            ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
            return total / jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, steps, padding)
        return total / math.prod(window) if average else total

    return (lambda key, n_in: (n_in, ())), apply


def _global(average: bool) -> tuple[Init, Apply]:
    def apply(params: Any, x: jax.Array) -> jax.Array:
        axes = tuple(range(1, x.ndim - 1))
        return x.mean(axes) if average else x.sum(axes)

    return (lambda key, n_in: (n_in, ())), apply


def _flatten() -> tuple[Init, Apply]:
    # Channels last, flattened per example; the next layer infers its input width.
    return (lambda key, n_in: (-1, ())), (lambda params, x: x.reshape(x.shape[0], -1))


def _elementwise(fn: Callable[[jax.Array], jax.Array]) -> tuple[Init, Apply]:
    return (lambda key, n_in: (n_in, ())), (lambda params, x: fn(x))


def _layer(layer: pb.Layer) -> tuple[Init, Apply]:
    kind = layer.WhichOneof("layer")
    m = getattr(layer, kind)
    if kind == "dense":
        return _dense(m)
    if kind == "relu":
        return _elementwise(lambda x: jnp.maximum(x, 0))
    if kind == "abs":
        return _elementwise(jnp.abs)
    if kind == "ab_relu":
        return _elementwise(lambda x: m.a * jnp.minimum(x, 0) + m.b * jnp.maximum(x, 0))
    if kind == "leaky_relu":
        return _elementwise(lambda x: jnp.where(x > 0, x, m.alpha * x))
    if kind == "erf":
        a = m.a if m.HasField("a") else 1.0
        b = m.b if m.HasField("b") else 1.0
        c = m.c if m.HasField("c") else 0.0
        return _elementwise(lambda x: a * erf(b * x) + c)
    activation = _activation(kind, m)
    if activation is not None:
        return _elementwise(activation)
    if kind == "conv":
        return _conv(m)
    if kind in ("avg_pool", "sum_pool"):
        return _pool(m)
    if kind == "global_avg_pool":
        return _global(True)
    if kind == "global_sum_pool":
        return _global(False)
    if kind == "flatten":
        return _flatten()
    if kind == "conv_local":
        from tests.engine.finite_width_conv import conv_local

        return conv_local(m)
    if kind == "conv_transpose":
        from tests.engine.finite_width_conv import conv_transpose

        return conv_transpose(m)
    if kind in ("layer_norm", "dropout", "exp_normalized"):
        from tests.engine.finite_width_rescaling import rescaling_layer

        return rescaling_layer(kind, m)
    if kind == "global_self_attention":
        from tests.engine.finite_width_attention import attention_layer

        return attention_layer(m)
    if kind == "serial":
        return _serial(list(m.layers))
    if kind in ("fan_out", "parallel", "fan_in_sum", "fan_in_prod", "fan_in_concat", "identity"):
        return _branching(kind, m)
    raise NotImplementedError(f"no finite-width version of {kind}")


def _get(m: Any, name: str, default: float) -> float:
    return float(getattr(m, name)) if m.HasField(name) else default


def _sigmoid(x: jax.Array) -> jax.Array:
    return 1 / (1 + jnp.exp(-x))


def _softplus(x: jax.Array) -> jax.Array:
    return jnp.logaddexp(x, 0.0)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # Klambauer et al. 2017
# ElementwiseNumerical's named activations, written out from their definitions.
NAMED: dict[str, Callable[[jax.Array], jax.Array]] = {
    "ACTIVATION_TANH": jnp.tanh,
    "ACTIVATION_SIGMOID": _sigmoid,
    "ACTIVATION_SWISH": lambda x: x * _sigmoid(x),
    "ACTIVATION_SOFTPLUS": _softplus,
    "ACTIVATION_ELU": lambda x: jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0))),
    "ACTIVATION_SELU": lambda x: (
        _SELU_SCALE * jnp.where(x > 0, x, _SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0)))
    ),
    "ACTIVATION_MISH": lambda x: x * jnp.tanh(_softplus(x)),
    "ACTIVATION_GELU_TANH": lambda x: (
        0.5 * x * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    ),
    "ACTIVATION_SOFTSIGN": lambda x: x / (1 + jnp.abs(x)),
    "ACTIVATION_ERF": erf,
    "ACTIVATION_RELU": lambda x: jnp.maximum(x, 0.0),
}


def _activation(kind: str, m: Any) -> Callable[[jax.Array], jax.Array] | None:
    """The finite-width function of the elementwise layers beyond ABRelu and Erf."""
    a = b = c = 0.0
    if kind in ("sin", "cos", "exp", "gaussian"):
        a, b = _get(m, "a", 1.0), _get(m, "b", -1.0 if kind == "gaussian" else 1.0)
    if kind in ("sin", "cos"):
        c = _get(m, "c", 0.0)
    if kind == "sigmoid_like":
        return lambda x: 0.5 * erf(x / 2.4020563531719796) + 0.5
    if kind == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if kind == "sign":
        return jnp.sign
    if kind == "gabor":
        return lambda x: jnp.exp(-x * x) * jnp.sin(x)
    if kind == "sin":
        return lambda x: a * jnp.sin(b * x + c)
    if kind == "cos":
        return lambda x: a * jnp.cos(b * x + c)
    if kind == "rbf":
        gamma = _get(m, "gamma", 1.0)
        return lambda x: jnp.sqrt(2.0) * jnp.sin(jnp.sqrt(2 * gamma) * x + jnp.pi / 4)
    if kind == "exp":
        return lambda x: a * jnp.exp(b * x)
    if kind == "gaussian":
        return lambda x: a * jnp.exp(b * x * x)
    if kind == "monomial":
        return lambda x: x ** int(m.degree)
    if kind == "rectified_monomial":
        return lambda x: jnp.where(x >= 0, x ** int(m.degree), 0.0)
    if kind == "polynomial":
        return lambda x: jnp.polyval(jnp.asarray(list(m.coef)[::-1], x.dtype), x)
    if kind == "elementwise_numerical":
        return NAMED[pb.Activation.Name(m.activation)]
    if kind == "hermite":
        degree = int(m.degree)
        coef = np.polynomial.hermite_e.herme2poly([0] * degree + [1])
        norm = np.sqrt(float(np.prod(np.arange(1, degree + 1))))
        return lambda x: jnp.polyval(jnp.asarray(coef[::-1] / norm, x.dtype), x)
    return None


def _branching(kind: str, m: Any) -> tuple[Init, Apply]:
    """Branches are tuples of activations; their widths travel as tuples of ints."""
    if kind == "identity":
        return (lambda key, n_in: (n_in, ())), (lambda params, x: x)
    if kind == "fan_out":
        num = int(m.num)
        return (lambda key, n_in: ((n_in,) * num, ())), (lambda params, x: (x,) * num)
    if kind == "parallel":
        parts = [_layer(b) for b in m.branches]

        def init(key: jax.Array, n_in: Any) -> tuple[Any, Any]:
            keys = jax.random.split(key, len(parts))
            outs = [p[0](k, n) for p, k, n in zip(parts, keys, n_in, strict=True)]
            return tuple(o[0] for o in outs), tuple(o[1] for o in outs)

        def apply(params: Any, x: Any) -> Any:
            return tuple(p[1](q, xi) for p, q, xi in zip(parts, params, x, strict=True))

        return init, apply
    if kind == "fan_in_concat":
        return (lambda key, n_in: (sum(n_in), ())), (lambda params, x: jnp.concatenate(x, axis=-1))
    join = (lambda a, b: a + b) if kind == "fan_in_sum" else (lambda a, b: a * b)

    def fold(params: Any, x: Any) -> jax.Array:
        out = x[0]
        for xi in x[1:]:
            out = join(out, xi)
        return out

    return (lambda key, n_in: (n_in[0], ())), fold


def _serial(layers: list[pb.Layer]) -> tuple[Init, Apply]:
    parts = [_layer(layer) for layer in layers]

    def init(key: jax.Array, n_in: int, example: jax.Array | None = None) -> tuple[int, Any]:
        params = []
        for (layer_init, layer_apply), k in zip(
            parts, jax.random.split(key, len(parts)), strict=True
        ):
            if n_in == -1:  # after Flatten: the width is the flattened size
                assert example is not None
                n_in = example.reshape(example.shape[0], -1).shape[-1]
            if getattr(layer_init, "takes_example", False):  # weights per position (ConvLocal)
                n_in, p = layer_init(k, n_in, example)  # type: ignore[call-arg]
            else:
                n_in, p = layer_init(k, n_in)
            params.append(p)
            if example is not None:
                example = layer_apply(p, example)
        return n_in, params

    def apply(params: Any, x: jax.Array) -> jax.Array:
        for (_, layer_apply), p in zip(parts, params, strict=True):
            x = layer_apply(p, x)
        return x

    return init, apply


def network(arch: Architecture) -> tuple[Init, Apply]:
    return _serial(list(arch.layers))


def monte_carlo(
    arch: Architecture, x1: jax.Array, x2: jax.Array, n_samples: int, seed: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Sample means of the empirical NNGP (averaged over output units) and of the
    empirical NTK of output unit 0, over `n_samples` independently drawn networks."""
    init, apply = network(arch)
    d = x1.shape[-1]

    def one(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        _, params = init(key, d, x1[:1])
        y1, y2 = apply(params, x1), apply(params, x2)
        nngp = y1 @ y2.T / y1.shape[-1]

        # NTK[a, b] = <df(x1[a])/dparams, df(x2[b])/dparams>: one plain gradient per example
        # of x2 (cheaper on XLA-CPU than a vmapped jacrev through convolutions), and its inner
        # product with every gradient of x1 as the directional derivative of f(x1) along it
        # (a jvp), which never materialises x1's gradients: the same inner products as the
        # product of the stacked, flattened gradients, without their memory traffic
        # (measured: 10 s -> 2 s of CPU for 200 fully connected networks of width 512).
        # A loop over x2's examples (lax.map), not one copy of the pair per example: the
        # same values to rounding; compiles 20-27 % quicker for the fully connected cases,
        # ~8 % for the CNNs (measured).
        def gradient(x: jax.Array) -> Any:
            return jax.grad(lambda p: apply(p, x[None])[0, 0])(params)

        def along(tangent: Any) -> jax.Array:
            return jax.jvp(lambda p: apply(p, x1)[:, 0], (params,), (tangent,))[1]

        return nngp, jax.lax.map(lambda x: along(gradient(x)), x2).T

    keys = jax.random.split(jax.random.PRNGKey(seed), n_samples)
    nngp, ntk = jax.lax.map(jax.jit(one), keys)
    return nngp.mean(0), ntk.mean(0)
