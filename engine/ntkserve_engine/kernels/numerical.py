"""ElementwiseNumerical(activation, deg): any named activation, by Gauss-Hermite quadrature.

neural-tangents' ElementwiseNumerical takes a Python function, which cannot travel over the
wire, so here the activation is named (tanh, sigmoid, swish, softplus, elu, selu, mish,
gelu_tanh, softsign; erf and relu too, to check the quadrature against their closed forms).
For centred Gaussians (u, v) with covariance [[q11, q12], [q12, q22]], write
    u = s1 z1,   v = s2 (rho z1 + sqrt(1 - rho^2) z2),   s = sqrt(q), rho = q12 / (s1 s2),
with z1, z2 independent standard normals; then (Novak et al. 2020, neural-tangents'
`ElementwiseNumerical`, on probabilists' Gauss-Hermite nodes x_i with weights w_i / sqrt(2 pi))
    E[f(u) f(v)] ~ sum_i w_i f(s1 x_i) sum_j w_j f(s2 (rho x_i + sqrt(1 - rho^2) x_j)),
for f = phi (the NNGP) and f = phi' (tdot, by forward-mode differentiation of phi). The
diagonal (u = v) is the one-dimensional sum_i w_i f(s x_i)^2. The outer sum is a `lax.scan`
over the nodes, so memory grows as deg times the kernel, not deg^2. Exact for polynomials of
degree < 2 deg; for smooth activations the error falls fast with deg; for Relu it is slow
(the kink), which is why the closed forms remain the layers to use where they exist.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.elementwise import DiagMoments, PairMoments, elementwise
from ntkserve_engine.kernels.rows import LayerRow, Role, Violations

DEFAULT_DEG = 25
MIN_DEG, MAX_DEG = 2, 100


def _mish(x: Array) -> Array:
    return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATIONS: dict[int, Callable[[Array], Array]] = {
    pb.ACTIVATION_TANH: jnp.tanh,
    pb.ACTIVATION_SIGMOID: jax.nn.sigmoid,
    pb.ACTIVATION_SWISH: jax.nn.silu,
    pb.ACTIVATION_SOFTPLUS: jax.nn.softplus,
    pb.ACTIVATION_ELU: jax.nn.elu,
    pb.ACTIVATION_SELU: jax.nn.selu,
    pb.ACTIVATION_MISH: _mish,
    pb.ACTIVATION_GELU_TANH: lambda x: jax.nn.gelu(x, approximate=True),
    pb.ACTIVATION_SOFTSIGN: jax.nn.soft_sign,
    pb.ACTIVATION_ERF: jax.scipy.special.erf,
    pb.ACTIVATION_RELU: jax.nn.relu,
}


def quadrature_moments(phi: Callable[[Array], Array], deg: int) -> tuple[PairMoments, DiagMoments]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(deg)
    weights = weights / weights.sum()  # numpy, once: the weights of N(0, 1)

    def evaluate(x: Array, want_tdot: bool) -> tuple[Array, ...]:
        """(phi(x),) or (phi(x), phi'(x)): both from one forward-mode pass."""
        if not want_tdot:
            return (phi(x),)
        return jax.jvp(phi, (x,), (jnp.ones_like(x),))

    def pair(q11: Array, q22: Array, q12: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        xs, ws = jnp.asarray(nodes, q12.dtype), jnp.asarray(weights, q12.dtype)
        s1, s2 = safe_math.sqrt(q11), safe_math.sqrt(q22)
        prod = q11 * q22
        positive = prod > 0
        rho = jnp.where(positive, q12 / safe_math.sqrt(jnp.where(positive, prod, 1)), 0)
        rho = jnp.clip(rho, -1, 1)
        cos = safe_math.sqrt(1 - rho * rho)

        def node(
            totals: tuple[Array, ...], x_w: tuple[Array, Array]
        ) -> tuple[tuple[Array, ...], None]:
            x, w = x_w
            v = s2[..., None] * (rho[..., None] * x + cos[..., None] * xs)
            outer = evaluate(s1 * x, want_tdot)
            inner = [jnp.sum(f * ws, axis=-1) for f in evaluate(v, want_tdot)]
            return tuple(t + w * o * i for t, o, i in zip(totals, outer, inner, strict=True)), None

        zeros = tuple(jnp.zeros_like(q12) for _ in range(2 if want_tdot else 1))
        totals, _ = lax.scan(node, zeros, (xs, ws))
        return totals[0], totals[1] if want_tdot else None

    def diag(q: Array, want_tdot: bool) -> tuple[Array, Array | None]:
        xs, ws = jnp.asarray(nodes, q.dtype), jnp.asarray(weights, q.dtype)
        values = evaluate(safe_math.sqrt(q)[..., None] * xs, want_tdot)
        moments = [jnp.sum(f * f * ws, axis=-1) for f in values]
        return moments[0], moments[1] if want_tdot else None

    return pair, diag


def _check(layer: pb.ElementwiseNumerical) -> Violations:
    out: Violations = []
    if layer.activation not in ACTIVATIONS:
        names = ", ".join(pb.Activation.Name(a) for a in ACTIVATIONS)
        out.append(("activation", f"is required: one of {names}; got {layer.activation}"))
    if layer.HasField("deg") and not MIN_DEG <= layer.deg <= MAX_DEG:
        out.append(("deg", f"must be between {MIN_DEG} and {MAX_DEG}, got {layer.deg}"))
    return out


ELEMENTWISE_NUMERICAL = LayerRow(
    message=pb.ElementwiseNumerical,
    role=Role.NONLINEAR,
    build=lambda layer: elementwise(
        lambda hp: quadrature_moments(ACTIVATIONS[layer.activation], layer.deg)
    ),
    defaults={"deg": DEFAULT_DEG},
    check=_check,
)
