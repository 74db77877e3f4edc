"""ConvLocal and ConvTranspose: exact identities, literal definitions, shapes, gradients.

- A one-layer network is linear in its parameters, y = J theta, so with theta ~ N(0, I) its
  output covariance is exactly J J^T, and (standard parameterization, J taken with respect to
  the trained parameters) its NTK is J J^T too. J comes from the finite-width layers of
  finite_width_conv.py (lax.conv_transpose, per-position weights), so these checks pin the
  padding, strides, CIRCULAR wrap, normalisation and bias of the kernels to the definitions,
  with no Monte Carlo noise, in both layouts (same positions only, and every pair).
- ConvLocal is Conv in the diagonal layout, and zero between different positions.
- ConvTranspose with stride 1 and an odd filter is Conv with SAME (and CIRCULAR) padding:
  lax pads the input by (f - 1) / 2 on each side in both, and a filter of iid weights has the
  same kernel as its mirror image. With VALID it is Conv VALID of the input zero-padded by
  f - 1 on each side (a "full" convolution).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import ArchitectureError, InputError, KernelFn, kernel_fn
from ntkserve_engine.kernels.conv_variants import MAX_TRANSPOSED_POSITIONS

from tests.engine.finite_width import network

# float64 sums of at most a few hundred O(1) terms, summed in different orders
ROUNDING = 1e-12


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape)


def _kernels(kfn: KernelFn, x1: np.ndarray, x2: np.ndarray | None = None) -> list[np.ndarray]:
    """(nngp, ntk) through the call's jitted program: one compilation per topology and shape,
    not one per operation as eager calls do."""
    return [np.asarray(k) for k in kfn(x1, x2, get=("nngp", "ntk"))]


def _jacobian_kernel(arch: stax.Architecture, x: np.ndarray) -> np.ndarray:
    """J J^T over every pair of (example, position) of a one-layer, one-channel network:
    (N, N, *S', *S')."""
    init, apply = network(arch)
    _, params = init(jax.random.PRNGKey(0), x.shape[-1], jnp.asarray(x[:1], jnp.float32))
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
    jac = jax.jit(jax.jacobian(lambda p: apply(p, jnp.asarray(x))))(params)
    out_shape = apply(params, jnp.asarray(x)).shape
    assert out_shape[-1] == 1
    rows = math.prod(out_shape)
    flat = jnp.concatenate([leaf.reshape(rows, -1) for leaf in jax.tree.leaves(jac)], axis=1)
    n, spatial = out_shape[0], out_shape[1:-1]
    d = len(spatial)
    k = np.asarray(flat @ flat.T).reshape(n, *spatial, n, *spatial)
    return k.transpose(0, d + 1, *range(1, d + 1), *range(d + 2, 2 * d + 2))


def _position_diagonal(k: np.ndarray) -> np.ndarray:
    """(N, N, *S, *S) -> (N, N, *S)."""
    d = (k.ndim - 2) // 2
    spatial = k.shape[2 : 2 + d]
    flat = k.reshape(*k.shape[:2], math.prod(spatial), math.prod(spatial))
    return np.diagonal(flat, axis1=2, axis2=3).reshape(*k.shape[:2], *spatial)


STANDARD = {"parameterization": "standard"}
TRANSPOSE_CASES = [
    ((3, 5, 2), dict(filter_shape=(3,), strides=(2,))),
    ((2, 4, 2), dict(filter_shape=(4,), strides=(2,), padding="SAME", b_std=0.3, **STANDARD)),
    ((2, 3, 1), dict(filter_shape=(1,), strides=(3,), W_std=1.3)),
    ((2, 3, 2), dict(filter_shape=(2,), strides=(3,), padding="SAME", **STANDARD)),
    ((2, 4, 2), dict(filter_shape=(4,), strides=(1,), padding="SAME", b_std=0.2)),
    ((3, 3, 2), dict(filter_shape=(5,), strides=(2,), padding="CIRCULAR", b_std=0.1)),
    ((2, 3, 2), dict(filter_shape=(2,), strides=(3,), padding="CIRCULAR", **STANDARD)),
    ((2, 2, 2), dict(filter_shape=(5,), strides=(1,), padding="CIRCULAR")),
    ((2, 2, 3, 2), dict(filter_shape=(3, 2), strides=(2, 1), padding="SAME", b_std=0.1)),
    ((2, 3, 2, 1), dict(filter_shape=(2, 3), strides=(1, 2), padding="CIRCULAR", W_std=0.7)),
    ((2, 2, 2, 2), dict(filter_shape=(3, 3), strides=(2, 2), b_std=0.0, **STANDARD)),
    ((2, 2, 1, 2, 1), dict(filter_shape=(2, 1, 2), strides=(2, 1, 1), b_std=0.4)),
]
LOCAL_CASES = [
    ((2, 5, 2), dict(filter_shape=(3,), strides=(2,), padding="SAME", b_std=0.3)),
    ((2, 5, 2), dict(filter_shape=(3,), strides=(2,), padding="SAME", b_std=0.3, **STANDARD)),
    ((3, 4, 2), dict(filter_shape=(2,), padding="CIRCULAR")),
    ((2, 3, 3, 2), dict(filter_shape=(2, 2), W_std=1.4, b_std=0.2)),
    ((2, 4, 3, 1), dict(filter_shape=(3, 2), strides=(2, 1), padding="CIRCULAR", **STANDARD)),
    ((2, 2, 2, 3, 1), dict(filter_shape=(2, 1, 2), padding="SAME", b_std=0.5)),
]


def _check_literal(builder: Any, shape: tuple[int, ...], args: dict[str, Any]) -> None:
    x = _x(shape, 1)
    arch = builder(1, **args)
    exact = _jacobian_kernel(arch, x)
    full = _kernels(KernelFn(arch, force_position_pairs=True), x)
    diagonal = _kernels(kernel_fn(arch), x)
    # ntk parameterization: J is taken at theta ~ N(0, I), so J J^T is the covariance (and
    # the NTK); standard: J is taken with respect to the trained parameters, so J J^T is the
    # NTK (the covariance has W_std^2 / fan-in where the NTK has 1 / s_in).
    checked = [1] if args.get("parameterization") == "standard" else [0, 1]
    for i in checked:
        assert full[i].shape == exact.shape
        scale = np.abs(exact).max()
        np.testing.assert_allclose(full[i], exact, rtol=ROUNDING, atol=ROUNDING * scale)
        np.testing.assert_allclose(
            diagonal[i], _position_diagonal(exact), rtol=ROUNDING, atol=ROUNDING * scale
        )


@pytest.mark.parametrize(("shape", "args"), TRANSPOSE_CASES)
def test_conv_transpose_is_its_literal_definition(shape: tuple[int, ...], args: dict) -> None:
    _check_literal(stax.ConvTranspose, shape, args)


@pytest.mark.parametrize(("shape", "args"), LOCAL_CASES)
def test_conv_local_is_its_literal_definition(shape: tuple[int, ...], args: dict) -> None:
    _check_literal(stax.ConvLocal, shape, args)


def _with(layer: stax.Architecture, readout: stax.Architecture) -> stax.Architecture:
    return stax.serial(
        stax.Conv(8, (2, 2), padding="SAME", W_std=1.4, b_std=0.1),
        stax.Relu(),
        layer,
        stax.Erf(),
        readout,
        stax.Dense(1, W_std=1.2, b_std=0.2),
    )


@pytest.mark.parametrize(
    ("padding", "parameterization"), [("VALID", "ntk"), ("SAME", "standard"), ("CIRCULAR", "ntk")]
)
def test_conv_local_is_conv_with_a_flatten_readout(parameterization: str, padding: str) -> None:
    args = dict(
        filter_shape=(2, 3),
        strides=(1, 2),
        padding=padding,
        W_std=1.3,
        b_std=0.2,
        parameterization=parameterization,
    )
    x1, x2 = _x((3, 4, 5, 2), 2), _x((2, 4, 5, 2), 3)
    local = kernel_fn(_with(stax.ConvLocal(8, **args), stax.Flatten()))
    shared = kernel_fn(_with(stax.Conv(8, **args), stax.Flatten()))
    assert not local.position_pairs
    for other in (None, x2):
        for a, b in zip(
            _kernels(local, x1, other),
            _kernels(shared, x1, other),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)  # the same program: Conv's rule


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_conv_local_full_layout_is_zero_between_positions(parameterization: str) -> None:
    def upto(layer: stax.Architecture) -> KernelFn:
        arch = stax.serial(stax.Conv(8, (2, 2), padding="SAME", W_std=1.4), stax.Relu(), layer)
        return KernelFn(arch, force_position_pairs=True)

    args = dict(padding="SAME", W_std=1.3, b_std=0.2, parameterization=parameterization)
    x1, x2 = _x((3, 4, 3, 2), 4), _x((2, 4, 3, 2), 5)
    local = _kernels(upto(stax.ConvLocal(8, (3, 2), **args)), x1, x2)
    shared = _kernels(upto(stax.Conv(8, (3, 2), **args)), x1, x2)
    for a, b in zip(local, shared, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == (3, 2, 4, 3, 4, 3)
        off = np.ones((12, 12), bool) & ~np.eye(12, dtype=bool)
        assert np.all(a.reshape(3, 2, 12, 12)[:, :, off] == 0)
        assert np.all(b.reshape(3, 2, 12, 12)[:, :, off] != 0)  # the check can fail
        np.testing.assert_allclose(
            _position_diagonal(a), _position_diagonal(b), rtol=ROUNDING, atol=0
        )


def _pooled(layer: stax.Architecture) -> stax.Architecture:
    return stax.serial(layer, stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, b_std=0.1))


@pytest.mark.parametrize("padding", ["SAME", "CIRCULAR"])
@pytest.mark.parametrize(
    ("filter_shape", "shape"), [((3,), (3, 6, 2)), ((3, 5), (2, 4, 5, 2)), ((1, 3), (2, 3, 3, 1))]
)
def test_conv_transpose_with_stride_one_and_odd_filter_is_conv(
    padding: str, filter_shape: tuple[int, ...], shape: tuple[int, ...]
) -> None:
    args = dict(padding=padding, W_std=1.3, b_std=0.2)
    x = _x(shape, 6)
    # pooled: every pair of positions; Flatten: same positions only
    for readout in (_pooled, lambda layer: stax.serial(layer, stax.Erf(), stax.Flatten())):
        transposed = kernel_fn(readout(stax.ConvTranspose(4, filter_shape, **args)))
        shared = kernel_fn(readout(stax.Conv(4, filter_shape, **args)))
        for a, b in zip(_kernels(transposed, x), _kernels(shared, x), strict=True):
            np.testing.assert_allclose(a, b, rtol=ROUNDING, atol=0)


@pytest.mark.parametrize("filter_shape", [(2,), (3, 2)])
def test_conv_transpose_valid_with_stride_one_is_a_full_convolution(
    filter_shape: tuple[int, ...],
) -> None:
    d = len(filter_shape)
    x = _x((3, *(4,) * d, 2), 7)
    padded = np.pad(x, [(0, 0), *[(f - 1, f - 1) for f in filter_shape], (0, 0)])
    args = dict(W_std=1.1, b_std=0.3, parameterization="standard")
    transposed = _pooled(stax.ConvTranspose(4, filter_shape, **args))
    shared = _pooled(stax.Conv(4, filter_shape, **args))
    for a, b in zip(
        _kernels(kernel_fn(transposed), x),
        _kernels(kernel_fn(shared), padded),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=ROUNDING, atol=0)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CIRCULAR"])
@pytest.mark.parametrize(
    ("spatial", "filter_shape", "strides"),
    [
        ((5,), (3,), (2,)),
        ((3,), (1,), (4,)),
        ((2, 3), (4, 2), (2, 3)),
        ((2, 1, 3), (3, 1, 2), None),
    ],
)
def test_output_shapes_are_lax_conv_transpose_shapes(
    padding: str, spatial: tuple[int, ...], filter_shape: tuple[int, ...], strides: Any
) -> None:
    d = len(spatial)
    spec = "N" + "DHW"[3 - d :] + "C"
    lax_padding = "SAME" if padding == "CIRCULAR" else padding  # NT: CIRCULAR keeps SAME's
    out = jax.eval_shape(
        lambda x, w: jax.lax.conv_transpose(
            x,
            w,
            strides or (1,) * d,
            lax_padding,
            dimension_numbers=(spec, spec[1:-1] + "IO", spec),
        ),
        jax.ShapeDtypeStruct((2, *spatial, 3), jnp.float32),
        jax.ShapeDtypeStruct((*filter_shape, 3, 4), jnp.float32),
    ).shape
    kfn = kernel_fn(stax.ConvTranspose(4, filter_shape, strides, padding))
    assert kfn.kernel_shape((2, *spatial, 3), None) == (2, 2, *out[1:-1])
    assert _kernels(kfn, np.ones((2, *spatial, 3)))[0].shape == (2, 2, *out[1:-1])


ARCHS = [
    pytest.param(
        stax.serial(
            stax.ConvTranspose(4, (3, 2), strides=(2, 1), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.ConvTranspose(4, (2, 2), strides=(1, 2), padding="CIRCULAR", W_std=1.2),
            stax.Erf(),
            stax.GlobalAvgPool(),
            stax.Dense(1, b_std=0.1),
        ),
        id="transpose",
    ),
    pytest.param(
        stax.serial(
            stax.Conv(4, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.ConvLocal(4, (2, 2), padding="CIRCULAR", W_std=1.2, b_std=0.2),
            stax.Erf(),
            stax.GlobalAvgPool(),
            stax.Dense(1, b_std=0.1),
        ),
        id="local",
    ),
]


@pytest.mark.parametrize("arch", ARCHS)
def test_values_and_gradients(arch: stax.Architecture) -> None:
    kfn = kernel_fn(arch)
    x1, x2 = _x((2, 2, 3, 1), 8), _x((2, 2, 3, 1), 9)
    # Values under a vjp: test_safe_math.py and test_gradients.py (see test_spatial.py).
    weights = jnp.arange(1.0, 5.0).reshape(2, 2)
    loss = lambda a: jnp.sum(kfn(a, x2, get="ntk") * weights)  # noqa: E731
    g = np.asarray(jax.jit(jax.grad(loss))(x1))
    eps = 1e-6
    steps = np.eye(x1.size).reshape(x1.size, *x1.shape) * eps
    values = jax.jit(jax.vmap(loss))(np.concatenate([x1 + steps, x1 - steps]))
    fd = np.asarray((values[: x1.size] - values[x1.size :]) / (2 * eps)).reshape(x1.shape)
    # central differences in float64: O(eps^2) truncation, O(1e-16 / eps) round-off
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    zero = jax.jit(jax.grad(lambda a: jnp.sum(kfn(a, get="ntk"))))(np.zeros_like(x1))
    assert np.all(np.isfinite(zero))


@pytest.mark.parametrize(
    ("arch", "shape", "needle"),
    [
        (stax.ConvTranspose(4, (3,), (1 << 20,)), (1, 1 << 9, 1), "output positions"),
        (stax.ConvTranspose(4, (9,), padding="SAME"), (1, 2, 1), "at most 5"),
        (stax.ConvTranspose(4, (2, 2)), (1, 3, 1), "2-dimensional window"),
        (stax.ConvLocal(4, (4,)), (1, 3, 1), "VALID window of 4"),
    ],
)
def test_shapes_that_do_not_fit_are_refused(
    arch: stax.Architecture, shape: tuple[int, ...], needle: str
) -> None:
    with pytest.raises(InputError, match=r"x1\.shape") as info:
        kernel_fn(arch)(np.zeros(shape))
    assert needle in str(info.value)


def test_absurd_filters_and_strides_are_refused_at_registration() -> None:
    huge = MAX_TRANSPOSED_POSITIONS + 1
    for arch in (stax.ConvTranspose(4, (huge,)), stax.ConvTranspose(4, (2,), (1 << 62,))):
        with pytest.raises(ArchitectureError, match="at most"):
            kernel_fn(arch)


def test_builders_have_neural_tangents_signatures() -> None:
    expected = {
        "out_chan": inspect.Parameter.empty,
        "filter_shape": inspect.Parameter.empty,
        "strides": None,
        "padding": "VALID",
        "W_std": 1.0,
        "b_std": None,
        "dimension_numbers": None,
        "parameterization": "ntk",
        "s": (1, 1),
    }
    for builder in (stax.Conv, stax.ConvTranspose, stax.ConvLocal):
        params = inspect.signature(builder).parameters
        assert {name: p.default for name, p in params.items()} == expected
    spec = stax.ConvLocal(3, (2,), padding="CIRCULAR", b_std=0.0, parameterization="standard")
    (layer,) = spec.layers
    assert layer.WhichOneof("layer") == "conv_local" and layer.conv_local.HasField("b_std")
    with pytest.raises(ValueError, match="channels-last"):
        stax.ConvTranspose(3, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW"))


def test_masked_inputs_conv_local_follows_conv_and_conv_transpose_refuses() -> None:
    """ConvLocal marks the same output positions present as Conv (its windows are Conv's), so
    with a Flatten readout the two stay equal; ConvTranspose refuses masked inputs."""
    mask = -99.0
    x = _x((3, 4, 3, 2), 10)
    x[0, 1, 2, :] = mask  # one position masked in every channel
    x[2, :2, :, :] = mask  # two rows of positions
    args = dict(filter_shape=(2, 2), padding="SAME", W_std=1.3, b_std=0.2)
    local = kernel_fn(_with(stax.ConvLocal(8, **args), stax.Flatten()))
    shared = kernel_fn(_with(stax.Conv(8, **args), stax.Flatten()))
    masked = [fn(x, get=("nngp", "ntk"), mask_constant=mask) for fn in (local, shared)]
    for a, b in zip(*masked, strict=True):
        np.testing.assert_array_equal(a, b)
    unmasked = shared(x, get="nngp")
    assert not np.allclose(masked[1][0], unmasked)  # the mask changed the kernel
    transposed = kernel_fn(_pooled(stax.ConvTranspose(4, (2, 2), strides=(2, 2))))
    with pytest.raises(InputError, match="mask_constant"):
        transposed(x, get="nngp", mask_constant=mask)
