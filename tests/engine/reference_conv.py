"""An independent float64 numpy reference for convolutional networks (and WideResNets).

Written from the papers, not from the engine: it tracks the covariance of every pair of
positions explicitly and applies each layer as the definition reads, so the engine (which
slices padded arrays, switches layouts and uses stable rewrites) and this file agree only
if both are right.

State, for inputs x1 (N1, *S, C) and x2 (N2, *S, C), positions S (2D in the tests, any
number of spatial dimensions here):
    K12[n1, n2, p, q] = E[z_c(x1[n1])_p z_c(x2[n2])_q]   (N1, N2, *S, *S), x1's positions first
    K11[n, p, q], K22[n, p, q]: each example with itself, (N, *S, *S); when x2 is None they
        are read off K12's batch diagonal instead of being carried;
    Theta[n1, n2, p, q]: the NTK, laid out like K12;  width: the finite channel count.
Inputs: K[p, q] = x1[n1, p, :] . x2[n2, q, :] / C.

Affine layers (Jacot et al. 2018; Lee et al. 2019; Novak et al. 2019, "Bayesian deep
convolutional networks with many channels are Gaussian processes"; Arora et al. 2019, "On
exact computation with an infinitely wide neural net"). With A the mean over the filter's
offsets f, the same offset for both positions of a pair (the weights are shared),
    A(K)[i, j] = 1/|F| sum_f K[s i + f - lo, s j + f - lo]   (0 outside the image for SAME,
                                                            wrapped for CIRCULAR),
which factorises over the spatial dimensions, and fan_in = C |F| (Dense: A = id, |F| = 1):
    NTK parameterization, z = W_std / sqrt(fan_in) W x + b_std b, W, b ~ N(0, 1):
        K' = W_std^2 A(K) + b_std^2,   Theta' = K' + W_std^2 A(Theta);
    standard (Sohl-Dickstein et al. 2020, arXiv:2001.07301), z = W x / sqrt(s_in) + b,
    W ~ N(0, W_std^2 s_in / fan_in), b ~ N(0, b_std^2): the same K', and since the trained
    parameters are W and b themselves, dz_p/dW_{c,f} = x_c(p + f) / sqrt(s_in) and
    dz/db = 1, so
        Theta' = (C |F| / s_in) A(K) + W_std^2 A(Theta) + [a bias is present]
    (a bias with b_std = 0 is still trained and adds 1; an absent one adds nothing). The
    next layer's finite width is out_chan * s_out (out_dim * s_out for Dense).
Nonlinearities act entrywise on (K[p, q], K11[p, p], K22[q, q]); Theta' = Theta * Kdot:
    ReLU family, phi = b relu(x) - a relu(-x) (Cho & Saul 2009, arccos form):
        E[relu(u) relu(v)] = sqrt(q11 q22) / (2 pi) (sin t + (pi - t) cos t),
        E[relu(u) relu(-v)] = sqrt(q11 q22) / (2 pi) (sin t - t cos t),
        P(u > 0, v > 0) = (pi - t) / (2 pi),  P(u > 0, v < 0) = t / (2 pi),
        t = arccos(q12 / sqrt(q11 q22)) (pi / 2 where a variance is 0, where the values
        are 0 anyway);
    Erf, a erf(b x) + c (Williams 1997, arcsin form):
        E = a^2 (2 / pi) arcsin(2 b^2 q12 / sqrt((1 + 2 b^2 q11) (1 + 2 b^2 q22))) + c^2,
        Kdot = 4 a^2 b^2 / pi / sqrt((1 + 2 b^2 q11) (1 + 2 b^2 q22) - 4 b^4 q12^2).
Linear layers map K12, K11, K22 and Theta alike:
    AvgPool / SumPool: each position of a pair averaged (summed) over its own window,
        independently of the other position's;
    GlobalAvgPool / GlobalSumPool: the mean (sum) over all pairs (p, q);
    Flatten: the mean over same-position pairs p = q (the channels of all positions side by
        side, so a Dense after it has fan_in = C |S|).
Branches (Novak et al. 2019, App. C): FanOut copies the state, parallel maps branch i with
layer i, FanInSum adds the branches' K and Theta (independent weights), Identity is id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

from tests.engine.reference_windows import (
    out_spatial,
    own_window,
    shared_offsets_mean,
)


@dataclasses.dataclass(frozen=True)
class State:
    """Second moments after one layer; see the module docstring for the layout."""

    k12: np.ndarray
    k11: np.ndarray | None  # None: x2 is x1, read K11 = K22 off k12's batch diagonal
    k22: np.ndarray | None
    ntk: np.ndarray
    width: int
    spatial: tuple[int, ...]


Value = State | list[State]


def _map_linear(
    state: State, fn: Callable[[np.ndarray], np.ndarray], spatial: tuple[int, ...], width: int
) -> State:
    """Applies a linear map of the position axes to K12, K11, K22 and Theta alike."""
    return State(
        k12=fn(state.k12),
        k11=None if state.k11 is None else fn(state.k11),
        k22=None if state.k22 is None else fn(state.k22),
        ntk=fn(state.ntk),
        width=width,
        spatial=spatial,
    )


# -- layers -------------------------------------------------------------------------------


def _affine(mean: State, m: pb.Dense | pb.Conv, fan_in: int, out_width: int) -> State:
    """Dense and Conv, given `mean`, the layer's input with A applied to every array (the
    filter offsets' mean; the input itself for Dense)."""
    w2 = (m.w_std if m.HasField("w_std") else 1.0) ** 2
    has_bias = m.HasField("b_std")
    b2 = m.b_std**2 if has_bias else 0.0

    def cov(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else w2 * a + b2

    k12 = w2 * mean.k12 + b2
    if m.parameterization == pb.PARAMETERIZATION_STANDARD:
        s_in = m.s_in or 1
        ntk = fan_in / s_in * mean.k12 + w2 * mean.ntk + (1.0 if has_bias else 0.0)
    else:
        ntk = k12 + w2 * mean.ntk
    return State(k12, cov(mean.k11), cov(mean.k22), ntk, out_width, mean.spatial)


def _dense(state: State, m: pb.Dense) -> State:
    """Dense over the channels, at every position (a 1x1 convolution) if any remain."""
    standard = m.parameterization == pb.PARAMETERIZATION_STANDARD
    out_width = m.out_dim * ((m.s_out or 1) if standard else 1)
    return _affine(state, m, state.width, out_width)


def _conv(state: State, m: pb.Conv) -> State:
    window = [int(w) for w in m.filter_shape]
    strides = [int(s) for s in m.strides] or [1] * len(window)
    d = len(state.spatial)
    if len(window) != d:
        raise ValueError(f"a {len(window)}D filter on {d}D positions")

    def offsets_mean(a: np.ndarray) -> np.ndarray:
        return shared_offsets_mean(a, window, strides, m.padding)

    spatial = out_spatial(state.spatial, window, strides, m.padding)
    mean = _map_linear(state, offsets_mean, spatial, state.width)
    standard = m.parameterization == pb.PARAMETERIZATION_STANDARD
    out_width = m.out_chan * ((m.s_out or 1) if standard else 1)
    return _affine(mean, m, state.width * math.prod(window), out_width)


def _pool(state: State, m: pb.AvgPool | pb.SumPool) -> State:
    window = [int(w) for w in m.window_shape]
    strides = [int(s) for s in m.strides] or [1] * len(window)
    d = len(state.spatial)
    if len(window) != d:
        raise ValueError(f"a {len(window)}D window on {d}D positions")
    how = "sum"
    if isinstance(m, pb.AvgPool):
        how = "inside" if m.normalize_edges and m.padding == pb.PADDING_SAME else "window"

    def pool(a: np.ndarray) -> np.ndarray:
        for i in range(d):
            for axis in (-2 * d + i, -d + i):
                a = own_window(a, axis, window[i], strides[i], m.padding, how)
        return a

    spatial = out_spatial(state.spatial, window, strides, m.padding)
    return _map_linear(state, pool, spatial, state.width)


def _global_pool(state: State, average: bool) -> State:
    d = len(state.spatial)
    if d == 0:
        raise ValueError("global pooling needs spatial positions")

    def reduce(a: np.ndarray) -> np.ndarray:
        axes = tuple(range(a.ndim - 2 * d, a.ndim))
        return np.asarray(a.mean(axis=axes) if average else a.sum(axis=axes))

    return _map_linear(state, reduce, (), state.width)


def _same_positions(a: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """a[..., p, p] for every position p: (..., *S, *S) -> (..., *S)."""
    n = math.prod(spatial)
    lead = a.shape[: a.ndim - 2 * len(spatial)]
    return np.diagonal(a.reshape(*lead, n, n), axis1=-2, axis2=-1).reshape(*lead, *spatial)


def _flatten(state: State) -> State:
    spatial = state.spatial

    def diagonal_mean(a: np.ndarray) -> np.ndarray:
        lead = a.ndim - 2 * len(spatial)
        return np.asarray(_same_positions(a, spatial).reshape(*a.shape[:lead], -1).mean(-1))

    return _map_linear(state, diagonal_mean, (), state.width * math.prod(spatial))


def _relu_moments(
    a: float, b: float, q11: np.ndarray, q22: np.ndarray, q12: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for phi(x) = b relu(x) - a relu(-x)."""
    norm = np.sqrt(q11 * q22)
    if np.all(norm > 0):
        cos = np.clip(q12 / norm, -1.0, 1.0)
    else:  # t = pi / 2 where a variance is 0 (the values are 0 there whatever t is)
        positive = norm > 0
        cos = np.clip(np.where(positive, q12 / np.where(positive, norm, 1.0), 0.0), -1.0, 1.0)
    t = np.arccos(cos)
    sin = np.sqrt(1 - cos * cos)  # sin(t), cos(t) = cos
    nngp = (a * a + b * b) * norm / (2 * np.pi) * (sin + (np.pi - t) * cos)
    tdot = (a * a + b * b) * (np.pi - t) / (2 * np.pi)
    if a != 0:  # the cross terms E[relu(u) relu(-v)] and P(u > 0, v < 0)
        nngp -= 2 * a * b * norm / (2 * np.pi) * (sin - t * cos)
        tdot += 2 * a * b * t / (2 * np.pi)
    return nngp, tdot


def _erf_moments(
    a: float, b: float, c: float, q11: np.ndarray, q22: np.ndarray, q12: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for phi(x) = a erf(b x) + c."""
    s11, s22 = 1 + 2 * b * b * q11, 1 + 2 * b * b * q22
    nngp = a * a * 2 / np.pi * np.arcsin(2 * b * b * q12 / np.sqrt(s11 * s22)) + c * c
    tdot = 4 * a * a * b * b / np.pi / np.sqrt(s11 * s22 - 4 * b**4 * q12**2)
    return nngp, tdot


def _elementwise(state: State, kind: str, m: Any) -> State:
    def opt(name: str, default: float) -> float:
        return float(getattr(m, name)) if m.HasField(name) else default

    if kind == "erf":
        a, b, c = opt("a", 1.0), opt("b", 1.0), opt("c", 0.0)

        def moments(q11: np.ndarray, q22: np.ndarray, q12: np.ndarray) -> tuple[np.ndarray, ...]:
            return _erf_moments(a, b, c, q11, q22, q12)
    else:
        slopes = {
            "relu": lambda: (0.0, 1.0),
            "abs": lambda: (-1.0, 1.0),
            "leaky_relu": lambda: (opt("alpha", 0.0), 1.0),
            "ab_relu": lambda: (opt("a", 0.0), opt("b", 0.0)),
        }
        if kind not in slopes:
            raise NotImplementedError(f"no convolutional reference for {kind}")
        lo, hi = slopes[kind]()

        def moments(q11: np.ndarray, q22: np.ndarray, q12: np.ndarray) -> tuple[np.ndarray, ...]:
            return _relu_moments(lo, hi, q11, q22, q12)

    s = state.spatial
    ones = (1,) * len(s)
    n1, n2 = state.k12.shape[:2]
    self1 = state.k11 if state.k11 is not None else state.k12[np.arange(n1), np.arange(n1)]
    self2 = state.k22 if state.k22 is not None else self1
    v1, v2 = _same_positions(self1, s), _same_positions(self2, s)  # (N, *S)
    k12, tdot = moments(v1.reshape(n1, 1, *s, *ones), v2.reshape(1, n2, *ones, *s), state.k12)

    def self_cov(v: np.ndarray, k: np.ndarray | None) -> np.ndarray | None:
        if k is None:
            return None
        return moments(v.reshape(len(v), *s, *ones), v.reshape(len(v), *ones, *s), k)[0]

    return State(
        k12,
        self_cov(v1, state.k11),
        self_cov(v2, state.k22),
        state.ntk * tdot,
        state.width,
        s,
    )


def _fan_in_sum(states: list[State]) -> State:
    if len({s.width for s in states}) != 1 or len({s.spatial for s in states}) != 1:
        raise ValueError("FanInSum of branches of different widths or positions")

    def total(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        if any(a is None for a in arrays):
            return None
        out = np.zeros_like(arrays[0])
        for a in arrays:
            out = out + a
        return out

    k12 = total([s.k12 for s in states])
    ntk = total([s.ntk for s in states])
    assert k12 is not None and ntk is not None
    return State(
        k12,
        total([s.k11 for s in states]),
        total([s.k22 for s in states]),
        ntk,
        states[0].width,
        states[0].spatial,
    )


def _layer(layer: pb.Layer, value: Value) -> Value:
    kind = layer.WhichOneof("layer")
    m = getattr(layer, kind)
    if kind == "serial":
        for inner in m.layers:
            value = _layer(inner, value)
        return value
    if kind == "identity":
        return value
    if kind == "fan_out":
        assert isinstance(value, State)
        return [value] * int(m.num)  # states are never modified in place
    if kind == "parallel":
        assert isinstance(value, list) and len(value) == len(m.branches)
        out = [_layer(b, v) for b, v in zip(m.branches, value, strict=True)]
        assert all(isinstance(v, State) for v in out), "nested branches"
        return [v for v in out if isinstance(v, State)]
    if kind == "fan_in_sum":
        assert isinstance(value, list)
        return _fan_in_sum(value)
    assert isinstance(value, State), f"{kind} on several branches"
    if kind == "dense":
        return _dense(value, m)
    if kind == "conv":
        return _conv(value, m)
    if kind in ("avg_pool", "sum_pool"):
        return _pool(value, m)
    if kind in ("global_avg_pool", "global_sum_pool"):
        return _global_pool(value, kind == "global_avg_pool")
    if kind == "flatten":
        return _flatten(value)
    return _elementwise(value, kind, m)


def input_state(x1: np.ndarray, x2: np.ndarray | None) -> State:
    """The inputs' covariances over all pairs of positions, K[p, q] = x1_p . x2_q / C."""
    x1 = np.asarray(x1, dtype=np.float64)
    spatial = tuple(x1.shape[1:-1])
    c = x1.shape[-1]

    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # (Na, *S, C) x (Nb, *S, C) -> (Na, Nb, *S, *S)
        d = len(spatial)
        g = np.tensordot(a, b, axes=([a.ndim - 1], [b.ndim - 1])) / c  # (Na, *S, Nb, *S)
        return np.moveaxis(g, 1 + d, 1)

    def self_gram(a: np.ndarray) -> np.ndarray:
        return np.stack([gram(row[None], row[None])[0, 0] for row in a])

    if x2 is None:
        k12 = gram(x1, x1)
        return State(k12, None, None, np.zeros_like(k12), c, spatial)
    x2 = np.asarray(x2, dtype=np.float64)
    k12 = gram(x1, x2)
    return State(k12, self_gram(x1), self_gram(x2), np.zeros_like(k12), c, spatial)


def kernels(
    arch: Architecture | pb.Architecture, x1: np.ndarray, x2: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of a network of the layers in the module docstring, for inputs
    (N, *S, C); x2 = None means x2 = x1. Positions left at the output stay, (N1, N2, *S, *S)."""
    value: Value = input_state(x1, x2)
    for layer in arch.layers:
        value = _layer(layer, value)
    assert isinstance(value, State), "the network ends on several branches"
    return value.k12, value.ntk
