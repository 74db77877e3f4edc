"""Repeats cost what their structure says (issue 17, finding 1): layer applications counted
with repeats multiplying and bounded at registration; shapes walked in O(structure); a
repeat whose layer changes shapes unrolled only while they change, and bounded."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from ntkserve import stax
from ntkserve_engine.kernels import ArchitectureError, InputError, kernel_fn
from ntkserve_engine.kernels.canonical import MAX_APPLICATIONS
from ntkserve_engine.kernels.combinators import MAX_UNROLLED

BLOCK = stax.serial(stax.Dense(8), stax.Relu())  # two applications


def _nested(levels: int, n: int) -> stax.Architecture:
    net = BLOCK
    for _ in range(levels):
        net = stax.repeat(net, n)
    return net


def test_applications_multiply_through_nested_repeats() -> None:
    assert kernel_fn(stax.serial(stax.Dense(8), stax.Relu())).applications == 2
    assert kernel_fn(stax.serial(stax.Dense(8), _nested(2, 7))).applications == 1 + 7 * 7 * 2
    branches = stax.serial(
        stax.Dense(8),
        stax.FanOut(2),  # FanOut and the join count once each, as layers do
        stax.parallel(stax.repeat(stax.Dense(8), 5), stax.Identity()),
        stax.FanInSum(),
    )
    assert kernel_fn(branches).applications == 1 + 1 + 5 + 1 + 1


@pytest.mark.parametrize("levels", [2, 3])
def test_nested_repeats_past_the_bound_are_refused_with_the_numbers(levels: int) -> None:
    # The 79-byte bomb of the issue: 2e8 (two levels) or 2e12 (three) applications per entry.
    with pytest.raises(ArchitectureError) as raised:
        kernel_fn(stax.serial(stax.Dense(8), _nested(levels, 10_000)))
    field, problem = raised.value.violations[-1]
    assert field == "architecture.layers[1].repeat"
    assert f"{2 * 10_000**levels:,}" in problem and f"{MAX_APPLICATIONS:,}" in problem


def test_the_bound_itself_is_accepted() -> None:
    at_bound = stax.repeat(stax.repeat(BLOCK, 10_000), MAX_APPLICATIONS // 20_000)
    assert kernel_fn(at_bound).applications == MAX_APPLICATIONS
    with pytest.raises(ArchitectureError):
        kernel_fn(stax.serial(stax.Dense(8), at_bound))  # one more


def test_shapes_of_a_deep_nested_repeat_are_walked_once_per_structure() -> None:
    # 100,000 applications; walked one by one it took ~0.2 s, per call.
    kfn = kernel_fn(stax.serial(stax.Dense(8), stax.repeat(stax.repeat(BLOCK, 500), 99)))
    assert kfn.kernel_shape((3, 5), None) == (3, 3)
    kfn = kernel_fn(
        stax.serial(stax.Conv(4, (3,), padding="SAME"), stax.repeat(_nested(2, 150), 2))
    )
    assert kfn.kernel_shape((2, 9, 3), (4, 9, 3)) == (2, 4, 9)


def test_a_repeat_loops_once_its_layer_keeps_the_shapes() -> None:
    # Halving positions until one is left, which the layer then keeps: unrolled three times,
    # then one loop, not 1,000 unrolled copies (a compile bomb).
    halve = stax.serial(stax.Conv(4, (3,), padding="SAME"), stax.AvgPool((2,), (2,), "SAME"))
    kfn = kernel_fn(stax.serial(stax.repeat(halve, 1000), stax.Flatten(), stax.Dense(1)))
    x = np.random.default_rng(0).standard_normal((2, 8, 3))
    assert kfn.kernel_shape(x.shape, None) == (2, 2)
    jaxpr = str(jax.make_jaxpr(lambda a: kfn.apply(kfn.params, a, None, ("nngp",)))(x))
    assert "scan" in jaxpr and jaxpr.count("conv_general_dilated") < 20
    looped = kernel_fn(stax.serial(stax.repeat(halve, 12), stax.Flatten(), stax.Dense(1)))
    unrolled = kernel_fn(stax.serial(*[halve] * 12, stax.Flatten(), stax.Dense(1)))
    np.testing.assert_allclose(looped(x, None, "nngp"), unrolled(x, None, "nngp"), rtol=1e-6)


def test_a_repeat_that_changes_shapes_on_every_application_is_bounded() -> None:
    grow = stax.ConvTranspose(2, (3,), padding="VALID")  # two more positions each time
    kfn = kernel_fn(stax.serial(stax.repeat(grow, 10_000), stax.Flatten(), stax.Dense(1)))
    with pytest.raises(InputError) as raised:
        kfn.kernel_shape((1, 4, 1), None)
    assert raised.value.field == "x1.shape"
    assert "architecture.layers[0].repeat" in raised.value.problem
    assert f"more than {MAX_UNROLLED} layer applications" in raised.value.problem
    # Nested unrolls multiply: 20 x 20 growing applications are over the bound too.
    nested = kernel_fn(stax.serial(stax.repeat(stax.repeat(grow, 20), 20), stax.Flatten()))
    with pytest.raises(InputError):
        nested.kernel_shape((1, 4, 1), None)
    few = kernel_fn(stax.serial(stax.repeat(grow, 5), stax.Flatten(), stax.Dense(1)))
    assert few.kernel_shape((1, 4, 1), None) == (1, 1)
    unrolled = kernel_fn(stax.serial(*[grow] * 5, stax.Flatten(), stax.Dense(1)))
    x = np.random.default_rng(1).standard_normal((2, 4, 1))
    np.testing.assert_allclose(few(x, None, "ntk"), unrolled(x, None, "ntk"), rtol=1e-6)


def test_a_violation_inside_nested_repeats_is_reported_once() -> None:
    # The static walk passes a repeat twice, so nested ones 2**depth times.
    inner = stax.Relu()  # needs Gaussian inputs: none after the Relu before it
    with pytest.raises(ArchitectureError) as raised:
        kernel_fn(stax.serial(stax.Dense(8), stax.repeat(stax.repeat(stax.repeat(inner, 3), 3), 3)))
    assert len(raised.value.violations) == 1
