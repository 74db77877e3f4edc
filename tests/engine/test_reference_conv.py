"""The engine's CNN and WideResNet kernels against the independent numpy reference of
reference_conv.py, in float64.

RTOL = 1e-10: both sides compute the same closed forms, in a different order of operations
(the engine slices padded arrays, keeps only same-position covariances for Flatten readouts
and uses stable rewrites of the arc-cosine and arcsine forms; the reference gathers every
pair of positions through index tables and uses the textbook forms), so only round-off may
differ: about 1e-15 after tens of layers. Any real error (a missing 1/|F|, a padding
shifted by one, a wrong width in the standard parameterization) shows at 1e-3 or more.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import kernel_fn

from tests.conftest import timeout_for
from tests.engine import reference, reference_conv
from tests.engine.architectures_wrn import wide_resnet

RTOL = 1e-10
GET = ("nngp", "ntk")

CNN_FLATTEN = stax.serial(
    stax.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
    stax.Relu(),
    stax.Conv(8, (2, 2), padding="VALID"),
    stax.Relu(),
    stax.Flatten(),
    stax.Dense(1),
)
# Standard parameterization: the finite widths enter the NTK (6 channels scaled by s_out = 2
# are 12 inputs to the next Conv, which divides them by its s_in = 2); b_std = 0.0 is a
# trained bias (adds 1), the readout has none.
CNN_GLOBAL_POOL_STANDARD = stax.serial(
    stax.Conv(6, (3, 3), padding="SAME", W_std=1.4, b_std=0.2, parameterization="standard"),
    stax.Relu(),
    stax.Conv(6, (2, 3), W_std=1.1, b_std=0.0, parameterization="standard", s=(1, 2)),  # VALID
    stax.Relu(),
    stax.Conv(5, (2, 2), padding="SAME", W_std=0.9, parameterization="standard", s=(2, 1)),
    stax.Relu(),
    stax.GlobalAvgPool(),
    stax.Dense(1, W_std=1.2, parameterization="standard"),
)
CNN_ERF_STRIDED = stax.serial(
    stax.Conv(8, (3, 3), strides=(2, 2), padding="SAME", W_std=1.3, b_std=0.2),
    stax.Erf(a=1.1, b=0.7, c=0.1),
    stax.Conv(8, (2, 2), strides=(2, 2), padding="SAME", W_std=1.2, b_std=0.05),
    stax.Erf(),
    stax.Conv(8, (2, 1), strides=(2, 2), W_std=0.8),  # VALID
    stax.Erf(),
    stax.Flatten(),
    stax.Dense(1, W_std=1.1, b_std=0.3),
)
# What the others leave out: CIRCULAR, SAME pooling with normalize_edges, SumPool, a Dense
# over the channels at every position, the rest of the ReLU family, three parallel branches.
CNN_MIXED = stax.serial(
    stax.Conv(6, (3, 2), padding="CIRCULAR", W_std=1.3, b_std=0.1),
    stax.LeakyRelu(0.2),
    stax.AvgPool((2, 3), strides=(2, 1), padding="SAME", normalize_edges=True),
    stax.Conv(6, (2, 2), W_std=1.2, b_std=0.3),
    stax.FanOut(3),
    stax.parallel(
        stax.serial(stax.Abs(), stax.Conv(6, (2, 2), padding="SAME", W_std=1.1)),
        stax.Conv(6, (1, 3), padding="SAME", W_std=0.7, b_std=0.2),
        stax.Identity(),
    ),
    stax.FanInSum(),
    stax.ABRelu(-0.4, 1.2),
    stax.SumPool((2, 2), padding="SAME"),
    stax.Dense(4, W_std=1.2, b_std=0.1, parameterization="standard"),
    stax.Relu(),
    stax.AvgPool((2, 2)),
    stax.GlobalSumPool(),
    stax.Dense(1, W_std=0.8, b_std=0.1),
)


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, *shape)


def _compare(arch: stax.Architecture, x1: np.ndarray, x2: np.ndarray | None) -> None:
    """Engine (the call: one compiled program) and reference agree at RTOL."""
    got = kernel_fn(arch)(x1, x2, get=GET)
    want = reference_conv.kernels(arch, x1, x2)
    n2 = len(x1) if x2 is None else len(x2)
    for name, g, w in zip(GET, got, want, strict=True):
        assert g.dtype == np.float64
        assert g.shape == w.shape == (len(x1), n2), name
        assert np.all(np.abs(w) > 0), name  # relative errors are meaningful
        np.testing.assert_allclose(g, w, rtol=RTOL, err_msg=name)


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        pytest.param(CNN_FLATTEN, (5, 4, 3), id="flatten"),
        pytest.param(CNN_GLOBAL_POOL_STANDARD, (5, 6, 2), id="global-pool-standard"),
        pytest.param(CNN_ERF_STRIDED, (7, 6, 2), id="erf-strided"),
        pytest.param(CNN_MIXED, (6, 5, 3), id="mixed"),
    ],
)
def test_cnn_matches_reference(arch: stax.Architecture, shape: tuple[int, ...]) -> None:
    _compare(arch, _images(3, shape, 0), _images(2, shape, 1))


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_wide_resnet_matches_reference(param: str) -> None:
    # 8x8 inputs: two stride-2 groups leave 2x2 positions, which AvgPool((2, 2)) averages.
    arch = wide_resnet(block_size=1, k=1, num_classes=1, param=param, pool=2)
    x1, x2 = _images(3, (8, 8, 3), 2), _images(2, (8, 8, 3), 3)
    # Jitted (the call): measured on 2 cores, a WideResNet compiles in a fraction of the
    # time its operations take to dispatch one by one (eager: ~4x slower here).
    _compare(arch, x1, x2)
    _compare(arch, x1, None)


def test_reference_is_the_fully_connected_recursion_on_one_position() -> None:
    """1x1 images through 1x1 convolutions, then layers after Flatten, are a fully connected
    network: a check of the reference itself against reference.py (the engine only turns the
    FC spec into its canonical proto)."""
    v1, v2 = _images(3, (4,), 4), _images(2, (4,), 5)
    conv = stax.serial(
        stax.Conv(5, (1, 1), W_std=1.3, b_std=0.2, parameterization="standard"),
        stax.Relu(),
        stax.Conv(5, (1, 1), W_std=0.9, b_std=0.1),
        stax.Erf(),
        stax.Flatten(),
        stax.Dense(5, W_std=1.2, b_std=0.3, parameterization="standard"),
        stax.LeakyRelu(0.3),
        stax.Dense(1, W_std=1.1, b_std=0.0, parameterization="standard"),
    )
    fc = stax.serial(
        stax.Dense(5, W_std=1.3, b_std=0.2, parameterization="standard"),
        stax.Relu(),
        stax.Dense(5, W_std=0.9, b_std=0.1),
        stax.Erf(),
        stax.Dense(5, W_std=1.2, b_std=0.3, parameterization="standard"),
        stax.LeakyRelu(0.3),
        stax.Dense(1, W_std=1.1, b_std=0.0, parameterization="standard"),
    )
    got = reference_conv.kernels(conv, v1[:, None, None, :], v2[:, None, None, :])
    want = reference.kernels(kernel_fn(fc).architecture, v1, v2)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-13)


@timeout_for(20)  # seconds alone on two cores
def test_wide_resnet_of_issue_123() -> None:
    """neural-tangents #123: WideResNet(block_size=4, k=1, num_classes=1), standard
    parameterization, all-zero 32x32x3 inputs. value_and_grad returns exactly the plain
    kernel's value, with finite gradients, and the kernels are their closed forms: with every
    input zero, every pre-activation covariance is the biases' alone, so the NNGP is 0 (the
    readout has no bias variance) and the NTK is 1 (its bias, trained in the standard
    parameterization, adds 1), exactly (the reference of reference_conv.py agrees; it is
    checked on this network with random inputs above).

    Jitted, both: every pair of 32x32 positions through 28 convolutions, forward and backward,
    compiles in ~8 s where eager dispatch took ~56 s (measured, 2 cores)."""
    arch = wide_resnet(block_size=4, k=1, num_classes=1, param="standard")
    kfn = kernel_fn(arch)
    x = np.zeros((2, 32, 32, 3))
    value, grad = jax.jit(jax.value_and_grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(x)
    nngp, ntk = kfn(x, get=GET)
    assert value == np.sum(ntk)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(nngp, np.zeros((2, 2)))
    np.testing.assert_allclose(ntk, np.ones((2, 2)), rtol=RTOL, atol=0)
