"""Each elementwise layer's moments against independent numerical integration, float64.

One Dense layer then the nonlinearity: the NNGP must be E[phi(u) phi(v)] and the NTK
q12 E[phi'(u) phi'(v)] (the Dense layer's NTK is its NNGP, q12), for (u, v) Gaussian with
the Dense layer's covariances. Quadrature is accurate to ~1e-13 here; 1e-10 leaves room
for round-off in the closed forms' larger terms (degree-16 sums) and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn
from scipy.special import erf, eval_hermitenorm, ndtr

from tests.engine.quadrature import gauss_hermite, rectified_power

RTOL = 1e-10
W_STD, B_STD = 1.1, 0.3
Fn = Callable[[np.ndarray], np.ndarray]


def _hermite(d: int) -> tuple[Fn, Fn]:
    norm = math.sqrt(math.factorial(d))
    return (
        lambda x: eval_hermitenorm(d, x) / norm,
        lambda x: d * eval_hermitenorm(d - 1, x) / norm if d else 0 * x,
    )


def _poly(coef: list[float]) -> tuple[Fn, Fn]:
    p = np.polynomial.Polynomial(coef)
    return p, p.deriv()


def _gelu_slope(x: np.ndarray) -> np.ndarray:
    return ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


SMOOTH: dict[str, tuple[stax.Architecture, Fn, Fn]] = {
    "erf": (
        stax.Erf(1.3, 0.6, -0.2),
        lambda x: 1.3 * erf(0.6 * x) - 0.2,
        lambda x: 1.3 * 0.6 * 2 / math.sqrt(math.pi) * np.exp(-0.36 * x * x),
    ),
    "sigmoid_like": (
        stax.Sigmoid_like(),
        lambda x: 0.5 * erf(x / 2.4020563531719796) + 0.5,
        lambda x: (
            0.5
            / 2.4020563531719796
            * 2
            / math.sqrt(math.pi)
            * np.exp(-((x / 2.4020563531719796) ** 2))
        ),
    ),
    "gelu": (stax.Gelu(), lambda x: x * ndtr(x), _gelu_slope),
    "sin": (
        stax.Sin(1.2, 0.7, 0.3),
        lambda x: 1.2 * np.sin(0.7 * x + 0.3),
        lambda x: 1.2 * 0.7 * np.cos(0.7 * x + 0.3),
    ),
    "cos": (
        stax.Cos(0.8, 1.5, -0.4),
        lambda x: 0.8 * np.cos(1.5 * x - 0.4),
        lambda x: -0.8 * 1.5 * np.sin(1.5 * x - 0.4),
    ),
    "rbf": (
        stax.Rbf(0.6),
        lambda x: math.sqrt(2) * np.sin(math.sqrt(1.2) * x + math.pi / 4),
        lambda x: math.sqrt(2) * math.sqrt(1.2) * np.cos(math.sqrt(1.2) * x + math.pi / 4),
    ),
    "exp": (stax.Exp(0.5, 0.6), lambda x: 0.5 * np.exp(0.6 * x), lambda x: 0.3 * np.exp(0.6 * x)),
    "gaussian": (
        stax.Gaussian(1.4, -0.7),
        lambda x: 1.4 * np.exp(-0.7 * x * x),
        lambda x: -1.96 * x * np.exp(-0.7 * x * x),
    ),
    "gabor": (
        stax.Gabor(),
        lambda x: np.exp(-x * x) * np.sin(x),
        lambda x: np.exp(-x * x) * (np.cos(x) - 2 * x * np.sin(x)),
    ),
    **{f"monomial{d}": (stax.Monomial(d), *_poly([0.0] * d + [1.0])) for d in (0, 1, 2, 3, 5, 8)},
    **{f"hermite{d}": (stax.Hermite(d), *_hermite(d)) for d in (0, 1, 2, 4, 7)},
    "polynomial": (
        stax.Polynomial([0.1, -0.5, 0.3, 0.0, -0.05]),
        *_poly([0.1, -0.5, 0.3, 0.0, -0.05]),
    ),
}


def _dense_covariances(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, ...]:
    d = x1.shape[1]
    cov = lambda a, b: W_STD**2 * (a @ b.T) / d + B_STD**2  # noqa: E731
    return cov(x1, x1), cov(x2, x2), cov(x1, x2)


def _engine(layer: stax.Architecture, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, ...]:
    arch = stax.serial(stax.Dense(16, W_std=W_STD, b_std=B_STD), layer)
    kfn = kernel_fn(arch)
    pair = kfn(x1, x2, get=("nngp", "ntk"))
    alone = kfn(x1, get=("nngp", "ntk"))
    return (*(np.asarray(k) for k in pair), *(np.asarray(k) for k in alone))


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(4)
    x1 = rng.randn(4, 6)
    x1[3] = -0.5 * x1[0]  # anti-parallel rows: rho = -1 up to the bias
    return x1, rng.randn(3, 6)


def _expected(moment: Callable[[float, float, float], tuple[float, float]], x1, x2):  # type: ignore[no-untyped-def]
    c11, c22, c12 = _dense_covariances(x1, x2)
    pairs = [
        (c12, np.diag(c11)[:, None], np.diag(c22)[None, :]),
        (c11, np.diag(c11)[:, None], np.diag(c11)[None, :]),
    ]
    out = []
    for c, v1, v2 in pairs:
        shape = c.shape
        v1, v2 = np.broadcast_to(v1, shape), np.broadcast_to(v2, shape)
        m = np.array([moment(v1[idx], v2[idx], c[idx]) for idx in np.ndindex(shape)])
        out += [m[:, 0].reshape(shape), (c * m[:, 1].reshape(shape))]
    return out


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_layers_match_gauss_hermite(name: str) -> None:
    layer, f, df = SMOOTH[name]
    x1, x2 = _inputs()

    def moment(q11: float, q22: float, q12: float) -> tuple[float, float]:
        return gauss_hermite(f, f, q11, q22, q12), gauss_hermite(df, df, q11, q22, q12)

    for got, want in zip(_engine(layer, x1, x2), _expected(moment, x1, x2), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4, 6, 9])
def test_rectified_monomial_matches_polar_integration(degree: int) -> None:
    x1, x2 = _inputs()

    def moment(q11: float, q22: float, q12: float) -> tuple[float, float]:
        slope = degree**2 * rectified_power(degree - 1, q11, q22, q12) if degree else 0.0
        return rectified_power(degree, q11, q22, q12), slope

    got = _engine(stax.RectifiedMonomial(degree), x1, x2)
    for g, want in zip(got, _expected(moment, x1, x2), strict=True):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def test_sign_is_the_arcsine_kernel() -> None:
    x1, x2 = _inputs()

    def moment(q11: float, q22: float, q12: float) -> tuple[float, float]:
        return 2 / math.pi * math.asin(np.clip(q12 / math.sqrt(q11 * q22), -1, 1)), 0.0

    for got, want in zip(_engine(stax.Sign(), x1, x2), _expected(moment, x1, x2), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-14)


def test_hermite_on_unit_variance_is_a_power_of_the_correlation() -> None:
    # neural-tangents' Hermite kernel, q12^degree, holds exactly when the variances are 1.
    rng = np.random.RandomState(5)
    x = rng.randn(5, 7)
    x *= np.sqrt(7) / np.linalg.norm(x, axis=1, keepdims=True)  # |x|^2 / d = 1
    nngp = kernel_fn(stax.serial(stax.Dense(3), stax.Hermite(3)))(x, get="nngp")
    np.testing.assert_allclose(nngp, (x @ x.T / 7) ** 3, rtol=1e-13, atol=1e-15)


def test_rbf_is_the_squared_exponential_kernel() -> None:
    rng = np.random.RandomState(6)
    x1, x2 = rng.randn(4, 5), rng.randn(3, 5)
    nngp = kernel_fn(stax.serial(stax.Dense(3), stax.Rbf(0.8)))(x1, x2, get="nngp")
    sq = ((x1[:, None] - x2[None]) ** 2).sum(-1) / 5
    np.testing.assert_allclose(nngp, np.exp(-0.8 * sq), rtol=1e-13)


@pytest.mark.parametrize("do_clip", [False, True])
def test_exp_normalized_is_the_normalized_gaussian_kernel(do_clip: bool) -> None:
    # Shankar et al. 2020: sqrt(q11 q22) exp(gamma (rho + shift)); tdot = gamma exp(...).
    gamma, shift = 0.7, -0.4
    x1, x2 = _inputs()

    def moment(q11: float, q22: float, q12: float) -> tuple[float, float]:
        rho = q12 / math.sqrt(q11 * q22)
        rho = min(max(rho, -1.0), 1.0) if do_clip else rho
        return math.sqrt(q11 * q22) * math.exp(gamma * (rho + shift)), gamma * math.exp(
            gamma * (rho + shift)
        )

    got = _engine(stax.ExpNormalized(gamma, shift, do_clip), x1, x2)
    for g, want in zip(got, _expected(moment, x1, x2), strict=True):
        np.testing.assert_allclose(g, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
