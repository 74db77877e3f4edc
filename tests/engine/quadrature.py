"""Independent numerical moments E[f(u) g(v)] of bivariate Gaussians, in float64 numpy.

- Smooth f, g: tensor Gauss-Hermite quadrature (exact for polynomials up to the rule's
  degree, spectrally accurate for entire functions such as sin, exp, erf, x Phi(x)).
- Rectified powers relu(u)^n relu(v)^n: polar coordinates. The radial integral is exact
  (int r^(2n+1) exp(-r^2/2) dr = 2^n n!), and the angular one, over the wedge where both
  are positive, has a smooth integrand: Gauss-Legendre is exact to round-off.
Neither shares code or formulas with the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Fn = Callable[[np.ndarray], np.ndarray]


def gauss_hermite(f: Fn, g: Fn, q11: float, q22: float, q12: float, points: int = 120) -> float:
    """E[f(u) g(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]), by Cholesky and GH."""
    z, w = np.polynomial.hermite_e.hermegauss(points)  # weight exp(-z^2 / 2)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    l11 = math.sqrt(q11)
    l21 = q12 / l11 if l11 > 0 else 0.0
    l22 = math.sqrt(max(q22 - l21 * l21, 0.0))
    u, v = l11 * z1, l21 * z1 + l22 * z2
    return float(np.einsum("i,j,ij->", w, w, f(u) * g(v)))


def rectified_power(n: int, q11: float, q22: float, q12: float, points: int = 64) -> float:
    """E[relu(u)^n relu(v)^n] (step functions for n = 0), by polar coordinates."""
    rho = np.clip(q12 / math.sqrt(q11 * q22), -1.0, 1.0)
    beta = math.acos(rho)  # v / r = cos(alpha - beta) when u / r = cos(alpha)
    lo, hi = beta - math.pi / 2, math.pi / 2  # the wedge where both cosines are positive
    x, w = np.polynomial.legendre.leggauss(points)
    alpha = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    angular = 0.5 * (hi - lo) * np.sum(w * (np.cos(alpha) * np.cos(alpha - beta)) ** n)
    radial = 2.0**n * math.factorial(n)
    return (q11 * q22) ** (n / 2) * radial * angular / (2 * math.pi)
