"""The engine's only custom derivative rules (`safe_math`) leave values alone.

neural-tangents' issue #123: `value_and_grad(kernel_fn)` returned other values than
`kernel_fn`, because its derivative rules computed a guarded forward value. In the engine a
value can differ under differentiation only through a custom rule, and the only ones are
`safe_math.sqrt` and `safe_math.arctan2`: this file checks that there are no others, that
each rule's primal output is the function's value bit for bit at the edge values where a
guard would act (zeros of both signs, negatives, subnormals, the smallest normal, huge), and
that their derivatives there are finite. The whole kernels' vjp primal is compared with the
plain kernel, eagerly, for every nonlinearity in test_gradients.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve_engine.kernels import safe_math

ENGINE = Path(safe_math.__file__).parents[1]


def test_safe_math_holds_the_only_custom_derivative_rules() -> None:
    rule = re.compile(r"custom_(jvp|vjp)")
    found = {
        p.relative_to(ENGINE).as_posix() for p in ENGINE.rglob("*.py") if rule.search(p.read_text())
    }
    assert found == {"kernels/safe_math.py"}


def _edges(dtype: type) -> np.ndarray:
    info = np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, info.tiny, info.tiny / 4, -info.tiny, info.eps]
    values += [np.sqrt(info.max) / 4, 1e-30 if dtype == np.float64 else 1e-20, 7.0]
    return np.asarray(values, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("jitted", [False, True])
def test_sqrt_rule_returns_the_value_and_a_finite_derivative(dtype: type, jitted: bool) -> None:
    x = _edges(dtype)

    def value_and_tangent(a: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.jvp(safe_math.sqrt, (a,), (jnp.ones_like(a),))

    run = jax.jit(value_and_tangent) if jitted else value_and_tangent
    plain = jax.jit(safe_math.sqrt) if jitted else safe_math.sqrt
    value, tangent = run(x)
    np.testing.assert_array_equal(value, plain(x))
    assert np.all(np.isfinite(tangent))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("jitted", [False, True])
def test_arctan2_rule_returns_the_value_and_a_finite_derivative(dtype: type, jitted: bool) -> None:
    edges = _edges(dtype)
    y, x = (a.ravel() for a in np.meshgrid(edges, edges))

    def value_and_tangent(b: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.jvp(safe_math.arctan2, (b, a), (jnp.ones_like(b), jnp.ones_like(a)))

    run = jax.jit(value_and_tangent) if jitted else value_and_tangent
    plain = jax.jit(safe_math.arctan2) if jitted else safe_math.arctan2
    value, tangent = run(y, x)
    np.testing.assert_array_equal(value, plain(y, x))
    assert np.all(np.isfinite(tangent))
