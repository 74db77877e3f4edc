"""An independent float64 numpy reference for fully connected networks.

Written from the papers' textbook forms (Cho & Saul 2009 with arccos; Williams 1997 with
arcsin; Lee et al. 2018; Jacot et al. 2018), not from the engine's stable rewrites, so the
two agree only if both are right.
"""

from __future__ import annotations

import numpy as np
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


def _relu_pair(q11: np.ndarray, q22: np.ndarray, q12: np.ndarray) -> tuple[np.ndarray, ...]:
    """E[relu(u)relu(v)], E[relu(u)relu(-v)], P(u>0, v>0), P(u>0, v<0)."""
    norm = np.sqrt(q11 * q22)
    theta = np.arccos(np.clip(q12 / norm, -1, 1))
    same = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    # relu(u) relu(-v): correlation -rho, angle pi - theta.
    cross = norm / (2 * np.pi) * (np.sin(theta) - theta * np.cos(theta))
    return same, cross, (np.pi - theta) / (2 * np.pi), theta / (2 * np.pi)


def _ab_relu(a: float, b: float, q11, q22, q12):  # type: ignore[no-untyped-def]
    # phi(x) = b relu(x) - a relu(-x)
    same, cross, p_same, p_cross = _relu_pair(q11, q22, q12)
    nngp = (a * a + b * b) * same - 2 * a * b * cross
    tdot = (a * a + b * b) * p_same + 2 * a * b * p_cross
    return nngp, tdot


def _erf(a: float, b: float, c: float, q11, q22, q12):  # type: ignore[no-untyped-def]
    s11, s22 = 1 + 2 * b * b * q11, 1 + 2 * b * b * q22
    nngp = a * a * 2 / np.pi * np.arcsin(2 * b * b * q12 / np.sqrt(s11 * s22)) + c * c
    tdot = 4 * a * a * b * b / np.pi / np.sqrt(s11 * s22 - 4 * b**4 * q12**2)
    return nngp, tdot


def kernels(arch: Architecture, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of a serial fully connected network, by the plain recursion."""
    d = x1.shape[1]
    q12 = x1 @ x2.T / d
    q11 = np.sum(x1 * x1, 1)[:, None] / d
    q22 = np.sum(x2 * x2, 1)[None, :] / d
    ntk = np.zeros_like(q12)
    width = d
    for layer in arch.layers:
        kind = layer.WhichOneof("layer")
        m = getattr(layer, kind)
        if kind == "dense":
            w2 = m.w_std**2
            b2 = m.b_std**2 if m.HasField("b_std") else 0.0
            if m.parameterization == pb.PARAMETERIZATION_STANDARD:
                ntk = width / m.s_in * q12 + w2 * ntk + (1.0 if m.HasField("b_std") else 0.0)
                q12, q11, q22 = (w2 * q + b2 for q in (q12, q11, q22))
            else:
                q12, q11, q22 = (w2 * q + b2 for q in (q12, q11, q22))
                ntk = q12 + w2 * ntk
            width = m.out_dim * m.s_out
            continue
        if kind == "erf":
            fn = lambda *q, m=m: _erf(m.a, m.b, m.c, *q)  # noqa: E731
        else:
            a, b = {"relu": (0, 1), "abs": (-1, 1)}.get(kind, (None, None))
            if kind == "leaky_relu":
                a, b = m.alpha, 1.0
            if kind == "ab_relu":
                a, b = m.a, m.b
            fn = lambda *q, a=a, b=b: _ab_relu(a, b, *q)  # noqa: E731
        new12, tdot = fn(q11, q22, q12)
        new11 = fn(q11, q11, q11)[0]
        new22 = fn(q22, q22, q22)[0]
        q12, q11, q22, ntk = new12, new11, new22, ntk * tdot
    return q12, ntk
