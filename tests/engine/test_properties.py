"""Property tests over randomly generated valid architectures (hypothesis).

For fully connected stacks (with residual, concatenated and multiplied branches) and small
CNNs (convolutions, pooling, Flatten or a global pool), with random hyper-parameters and
parameterizations, and random inputs (a zero row, parallel and anti-parallel rows), both
kernels of x2 = None must be
- finite,
- symmetric (K == K^T over the two sample axes, bit for bit),
- positive semi-definite, to within float64 round-off (PSD_RTOL below),
and their gradient with respect to the inputs (of sum(C * K) for a random C) must be
finite, at the drawn inputs and at all-zero inputs. Values and gradients come from the
service's ComputeEngine.value_and_grad: the jitted programs that the service runs.

Cost is two XLA compilations (forward and gradient) per new topology; hyper-parameter values
are arguments, so examples that differ only in them share those. Hence few examples and
compact topologies; generation is derandomized so CI sees the same examples on every run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from ntkserve import stax
from ntkserve_engine.kernels import KernelFn, kernel_fn
from ntkserve_engine.kernels.symmetry import mirror_upper
from ntkserve_server.compute import ComputeEngine, check

from tests.engine.architectures import MORE

GET = ("nngp", "ntk")


@dataclasses.dataclass(frozen=True)
class Net:
    """An architecture and the Python that builds it (what hypothesis prints on failure)."""

    arch: stax.Architecture
    code: str

    def __repr__(self) -> str:
        return self.code


def layer(name: str, *args: Any, **kwargs: Any) -> Net:
    """stax.<name>(*args, **kwargs), remembered as code."""
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return Net(getattr(stax, name)(*args, **kwargs), f"stax.{name}({', '.join(shown)})")


def serial(*nets: Net) -> Net:
    return Net(
        stax.serial(*(n.arch for n in nets)),
        f"stax.serial({', '.join(n.code for n in nets)})",
    )


def parallel(*nets: Net) -> Net:
    return Net(
        stax.parallel(*(n.arch for n in nets)),
        f"stax.parallel({', '.join(n.code for n in nets)})",
    )


# -- strategies ---------------------------------------------------------------------------

W_STD = st.floats(0.1, 3.0, exclude_min=True)
B_STD = st.one_of(st.none(), st.just(0.0), st.floats(0.01, 2.0))
PARAMETERIZATION = st.sampled_from(["ntk", "standard"])


@st.composite
def affine(draw: st.DrawFn, kind: str, *shape: Any, **options: Any) -> Net:
    """Dense(width) or Conv(channels, filter, ...) with random W_std, b_std, parameterization."""
    return layer(
        kind,
        *shape,
        **options,
        W_std=draw(W_STD),
        b_std=draw(B_STD),
        parameterization=draw(PARAMETERIZATION),
    )


# Growing activations (exp, powers: architectures.MORE gives them fewer layers) compound
# with each other and with FanInProd: at most one per network, and exp (whose kernel is
# exp(q)) only as the first activation, where q is that of the data. Otherwise the true
# kernel can exceed float64's range, e.g. Dense(W_std=2), Hermite(2) * Dense, Exp: q ~ 3e3,
# the kernel ~ exp(900). An overflow of the exact value is no bug of the engine.
GROWING = frozenset(name for name, (_, depth) in MORE.items() if depth < 3)


def _closed_form(draw: st.DrawFn) -> Net:
    name = draw(st.sampled_from(["Relu", "LeakyRelu", "Abs", "ABRelu", "Erf"]))
    if name == "LeakyRelu":
        return layer(name, draw(st.floats(-1.0, 1.0)))
    if name == "ABRelu":
        return layer(name, draw(st.floats(-2.0, 2.0)), draw(st.floats(-2.0, 2.0)))
    if name == "Erf":
        return layer(
            name, draw(st.floats(0.1, 2.0)), draw(st.floats(0.1, 2.0)), draw(st.floats(-1.0, 1.0))
        )
    return layer(name)


@st.composite
def activation(draw: st.DrawFn, used: dict[str, int]) -> Net:
    """Half the time a closed-form ABRelu/Erf family member with random parameters, else one
    of architectures.MORE (fixed parameters), within GROWING's rule; `used` counts per
    network."""
    allowed = sorted(
        name
        for name in MORE
        if name not in GROWING or (not used["growing"] and (name != "exp" or not used["any"]))
    )
    used["any"] += 1
    if draw(st.booleans()):
        return _closed_form(draw)
    name = draw(st.sampled_from(allowed))
    used["growing"] += name in GROWING
    return Net(MORE[name][0], f"architectures.MORE[{name!r}][0]")


@st.composite
def fc_block(draw: st.DrawFn, used: dict[str, int]) -> Net:
    """Dense, then one of: an activation; a residual block; two activations concatenated; a
    product of two Gaussian branches. Every block starts with Dense, so whatever the previous
    block left (Gaussian or not) is a valid input."""
    width = draw(st.integers(1, 16))
    dense = draw(affine("Dense", width))
    body = draw(st.sampled_from(["plain", "residual", "concat", "prod"]))

    def act() -> Net:
        return draw(activation(used))

    if body == "plain":
        return serial(dense, act())
    if body == "residual":  # pre-activation: Identity + (act, Dense); equal widths to sum
        branch = serial(act(), draw(affine("Dense", width)))
        return serial(
            dense,
            layer("FanOut", 2),
            parallel(layer("Identity"), branch),
            layer("FanInSum"),
            act(),
        )
    if body == "concat":
        return serial(dense, layer("FanOut", 2), parallel(act(), act()), layer("FanInConcat"))
    other = draw(affine("Dense", draw(st.integers(1, 16))))
    return serial(
        dense,
        layer("FanOut", 2),
        parallel(serial(act(), draw(affine("Dense", width))), other),
        layer("FanInProd"),
    )


@st.composite
def fc_nets(draw: st.DrawFn) -> Net:
    used = {"any": 0, "growing": 0}
    blocks = draw(st.lists(fc_block(used), min_size=1, max_size=3))
    return serial(*blocks, draw(affine("Dense", draw(st.integers(1, 3)))))


@st.composite
def inputs(draw: st.DrawFn, features: tuple[int, ...]) -> np.ndarray:
    """2 to 4 rows of normal data; maybe one row a multiple of another (a correlation of +-1,
    where arc-cosine kernels are not differentiable), maybe one row all zeros."""
    n = draw(st.integers(2, 4))
    x = np.random.RandomState(draw(st.integers(0, 2**16))).randn(n, *features)
    if draw(st.booleans()):
        i, j = draw(st.permutations(range(n)))[:2]
        x[j] = draw(st.sampled_from([1.0, -1.0, 2.5, -0.5])) * x[i]
    zero_row = draw(st.one_of(st.none(), st.integers(0, n - 1)))
    if zero_row is not None:
        x[zero_row] = 0
    return x


@st.composite
def fc_cases(draw: st.DrawFn) -> tuple[Net, np.ndarray]:
    return draw(fc_nets()), draw(inputs((draw(st.integers(1, 5)),)))


def _out(size: int, window: int, stride: int, padding: str) -> int:
    return (size - window) // stride + 1 if padding == "VALID" else -(-size // stride)


@st.composite
def window(draw: st.DrawFn, shape: list[int]) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """A window shape, strides and padding that fit `shape`, which is updated in place."""
    padding = draw(st.sampled_from(["VALID", "SAME", "CIRCULAR"]))
    limit = shape if padding == "VALID" else [3] * len(shape)
    filt = tuple(draw(st.integers(1, min(3, s))) for s in limit)
    strides = tuple(draw(st.integers(1, 2)) for _ in shape)
    shape[:] = [_out(s, f, t, padding) for s, f, t in zip(shape, filt, strides, strict=True)]
    return filt, strides, padding


@st.composite
def cnn_cases(draw: st.DrawFn) -> tuple[Net, np.ndarray]:
    """1 or 2 x (Conv, activation, optional pooling), then Flatten or a global pool, Dense."""
    image = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    x = draw(inputs((*image, draw(st.integers(1, 3)))))
    shape, used, layers = list(image), {"any": 0, "growing": 0}, list[Net]()
    for _ in range(draw(st.integers(1, 2))):
        filt, strides, padding = draw(window(shape))
        conv = affine("Conv", draw(st.integers(1, 4)), filt, strides=strides, padding=padding)
        layers += [draw(conv), draw(activation(used))]
        pool = draw(st.sampled_from([None, "AvgPool", "SumPool"]))
        if pool is not None:
            filt, strides, padding = draw(window(shape))
            layers.append(layer(pool, filt, strides=strides, padding=padding))
    readout = draw(st.sampled_from(["Flatten", "GlobalAvgPool", "GlobalSumPool"]))
    layers += [layer(readout), draw(affine("Dense", draw(st.integers(1, 3))))]
    return serial(*layers), x


# -- the properties -----------------------------------------------------------------------

EPS = float(np.finfo(np.float64).eps)
# PSD tolerance, relative to the largest |eigenvalue|. eigvalsh is backward stable: it
# returns the exact eigenvalues of K + E with ||E|| <= c * N * eps * ||K|| (c small), and the
# kernel entries carry the round-off of a few closed-form layers, each Lipschitz in its
# inputs with O(1-100) constants: O(1e2-1e3) eps relative, well under 1e4 eps for N <= 4
# rows. 5e5 eps (~1.1e-10) is generous for that, and far below what a wrong formula gives
# (a kernel that is not PSD is off by O(1) relative; see the zero-variance case below: -0.067).
PSD_RTOL = 5e5 * EPS
# Except where a correlation is exactly +-1: inputs with parallel rows (a row and a multiple
# of it; or one channel, where every input position is a scalar). Arcsin-like kernels are
# not Lipschitz there (architectures.NOT_LIPSCHITZ: sign and step, and so the derivative
# kernel of every ABRelu, i.e. the NTK of Relu, LeakyRelu, Abs): the angle is
# atan2(sqrt(det), c) with det = q11 q22 - c^2 a rounding of ~3 eps q^2 instead of 0, i.e.
# sqrt(6 eps) ~ 4e-8, and the step kernel (pi - angle) / (2 pi) is off by ~6e-9 per entry
# and layer. Two parallel rows only ever move inwards (a PSD 2 x 2 block), but three or more
# make K - K_exact indefinite at first order: found by this file, e.g. Conv(1, (1, 1)),
# Relu, Conv(1, (1, 1), W_std=3), Relu, Flatten, Dense on scalar images 1.76, 4.41, 0.98,
# min/max eigenvalue -1.5e-10. Over N <= 4 rows and a few such layers that is below
# 10 sqrt(eps) ~ 1.5e-7, still orders of magnitude below a wrong formula.
PSD_RTOL_PARALLEL = 10 * np.sqrt(EPS)


def _has_parallel_rows(x: np.ndarray) -> bool:
    """Some pre-activation correlation is exactly +-1: one channel (scalar positions), or two
    nonzero rows parallel or anti-parallel."""
    if x.shape[-1] == 1:
        return True
    rows = x.reshape(len(x), -1)
    rows = rows[np.abs(rows).max(axis=1) > 0]
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    cosines = np.abs(unit @ unit.T)[np.triu_indices(len(unit), 1)]
    return bool(np.any(cosines > 1 - 1e-12))


# Found by this file, since fixed: the NTK was not PSD when a pre-activation had zero
# variance but a nonzero NTK (a zero input row into Dense(b_std=0.0, parameterization=
# 'standard'): a zero-initialised bias that is still trained). The Relu family's derivative
# kernel was 1/2 between that row and every row, itself included, which no slope at 0 gives;
# see abrelu.py. test_ntk_is_psd_with_a_zero_variance_pre_activation (was -0.067 relative).


# Found by this file: the service's jitted programs gave K a rounding from symmetric for
# x2 = None (XLA fused the last layer's update into the in-program mirror and computed it
# twice with different FMA contractions). Since fixed: the kernels are mirrored on the host
# (symmetry.mirror_upper), so symmetry is checked bit for bit.


def _check_kernel(k: np.ndarray, rtol: float) -> None:
    assert k.ndim == 2 and k.shape[0] == k.shape[1]  # every network here ends in Dense
    assert np.all(np.isfinite(k)), k
    np.testing.assert_array_equal(k, k.T)  # x2 = None: symmetric bit for bit
    eig = np.linalg.eigvalsh(k)
    assert eig.min() >= -rtol * np.abs(eig).max(), (eig, k)


# The service's engine: one forward and one gradient program per topology (hyper-parameter
# values are their arguments), so examples that differ only in values share compilations.
ENGINE = ComputeEngine(max_topologies=1024)


def _check(net: Net, x: np.ndarray, seed: int) -> None:
    note(f"x = np.{x!r}")
    kfn = kernel_fn(net.arch)
    compiled = ENGINE.compiled(kfn)
    rng = np.random.RandomState(seed)
    # A random cotangent: the gradient of sum(C * K), C not symmetric, for both kernels.
    cotangents = tuple(rng.randn(*kfn.kernel_shape(x.shape, None)) for _ in GET)
    for point in (x, np.zeros_like(x)):
        values, g1, g2, _ = ENGINE.value_and_grad(check(compiled, point, None, GET), cotangents)
        rtol = PSD_RTOL_PARALLEL if _has_parallel_rows(point) else PSD_RTOL
        for k in values:
            _check_kernel(k, rtol)
        assert g2 is None and g1.shape == x.shape
        assert np.all(np.isfinite(g1)), g1


PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(PROPERTY, max_examples=8)
@given(case=fc_cases(), seed=st.integers(0, 2**16))
def test_fully_connected(case: tuple[Net, np.ndarray], seed: int) -> None:
    _check(*case, seed)


@settings(PROPERTY, max_examples=5)
@given(case=cnn_cases(), seed=st.integers(0, 2**16))
def test_convolutional(case: tuple[Net, np.ndarray], seed: int) -> None:
    _check(*case, seed)


SYMMETRY_CASES = {  # each failed before the fix, on this machine's XLA-CPU
    "pooled": (
        stax.serial(stax.Conv(1, (1, 1)), stax.GlobalAvgPool(), stax.Dense(1)),
        (3, 3, 3, 1),
    ),
    "dense": (stax.serial(stax.Dense(1, b_std=0.1), stax.Dense(1)), (4, 3)),
    "pooled_bias": (
        stax.serial(stax.Conv(1, (1, 1)), stax.GlobalAvgPool(), stax.Dense(1, b_std=0.1)),
        (3, 3, 3, 1),
    ),
}


@pytest.mark.parametrize(("arch", "shape"), SYMMETRY_CASES.values(), ids=SYMMETRY_CASES.keys())
def test_jitted_kernels_are_exactly_symmetric(
    arch: stax.Architecture, shape: tuple[int, ...]
) -> None:
    """Minimal networks through the service's ComputeEngine forward program (and the
    in-process kfn(x): the same program and host mirror)."""
    kfn = kernel_fn(arch)
    compiled = ENGINE.compiled(kfn)
    for seed in range(8):
        x = np.random.RandomState(seed).randn(*shape)
        for k in (*kfn(x, get=GET), *ENGINE.kernel(check(compiled, x, None, GET))):
            np.testing.assert_array_equal(k, np.asarray(k).T)


@pytest.mark.parametrize("full", [False, True])
def test_kernels_with_positions_are_exactly_symmetric(full: bool) -> None:
    """Kernels that keep positions: (N, N, H, W) swaps the samples; the full (N, N, H, W,
    H, W) swaps the samples and the two position groups, diagonal blocks K[i, i] included."""
    arch = stax.serial(stax.Conv(2, (2, 2), padding="SAME"), stax.Relu(), stax.Conv(1, (2, 2)))
    kfn = KernelFn(arch.to_proto(), force_position_pairs=full)
    x = np.random.RandomState(0).randn(3, 3, 4, 2)
    engine = ComputeEngine()  # by id, as the server does: the full variant has the same id
    for k in engine.kernel(check(engine.compiled(kfn), x, None, GET)):
        assert k.shape == ((3, 3, 2, 3, 2, 3) if full else (3, 3, 2, 3))
        swap = (1, 0, 4, 5, 2, 3) if full else (1, 0, 2, 3)
        np.testing.assert_array_equal(k, np.transpose(k, swap))
    raw = np.random.RandomState(1).randn(3, 3, 2, 3, 2, 3)  # mirror_upper keeps the upper part
    mirrored = mirror_upper(raw, position_pairs=True)
    np.testing.assert_array_equal(mirrored, np.transpose(mirrored, (1, 0, 4, 5, 2, 3)))
    np.testing.assert_array_equal(mirrored[0, 1], raw[0, 1])
    np.testing.assert_array_equal(mirrored[2, 0], np.transpose(raw[0, 2], (2, 3, 0, 1)))


def test_ntk_is_psd_with_a_zero_variance_pre_activation() -> None:
    arch = stax.serial(
        stax.Dense(1, W_std=0.1),
        stax.Dense(1, b_std=0.0, parameterization="standard"),
        stax.Relu(),
        stax.Dense(1),
    )
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # kfn(x) gives the same bits
    kfn = kernel_fn(arch)
    for k in ENGINE.kernel(check(ENGINE.compiled(kfn), x, None, GET)):
        eig = np.linalg.eigvalsh(k)
        assert eig.min() >= -PSD_RTOL * np.abs(eig).max(), eig


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (300, 300), (513, 513, 3)])
def test_mirror_upper_in_blocks(shape: tuple[int, ...]) -> None:
    """The host mirror copies in blocks of rows (past one block too, and with positions):
    the upper triangle kept, the lower one its transpose, nothing else touched."""
    a = np.random.default_rng(0).random(shape)
    out = mirror_upper(a, position_pairs=False)
    upper = np.triu(np.ones(shape[:2], dtype=bool)).reshape(shape[:2] + (1,) * (len(shape) - 2))
    np.testing.assert_array_equal(out, np.where(upper, a, a.swapaxes(0, 1)))
