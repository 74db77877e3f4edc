"""Helpers of the gradient tests: central differences, the hyper-parameter gradient check
against them, and `GradientCases`, many gradient checks of one network answered by one
compiled program.

Compiling is what the gradient tests pay for (0.74 s per pair program of a small network
here, averaged over 20 of them, against 5 ms to run it), so a network's checks share their programs:
every case (hard inputs, the points of central differences in the inputs and in each
hyper-parameter) is one entry of a batch that one `jit(vmap(value_and_grad))` program runs,
one program per form (x2 absent, x2 given) and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The central differences' step in float64: relative truncation error ~ step² (1e-12, times
# the third derivative), round-off ~ eps/step (2e-10); rtol 1e-5 leaves room for kernels
# with large higher derivatives.
STEP = 1e-6
FD_RTOL, FD_ATOL = 1e-5, 1e-7


def central_difference(f, x: np.ndarray, eps: float = STEP) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences along every coordinate, evaluated as one batched call."""
    steps = np.eye(x.size).reshape(x.size, *x.shape) * eps
    values = jax.jit(jax.vmap(f))(np.concatenate([x + steps, x - steps]))
    return np.asarray((values[: x.size] - values[x.size :]) / (2 * eps)).reshape(x.shape)


def assert_hyper_gradients_match(loss: Callable[[Any], Any], params: Any) -> None:
    """jax.grad of `loss` with respect to each hyper-parameter matches a central difference
    in float64 (rtol 1e-5: the difference's truncation and rounding at step 1e-6)."""
    grads, _ = jax.tree.flatten(jax.jit(jax.grad(loss))(params))
    values, tree = jax.tree.flatten(params)
    for i, (grad, value) in enumerate(zip(grads, values, strict=True)):

        def shifted(delta: float, i: int = i, value: float = value) -> float:
            moved = list(values)
            moved[i] = value + delta
            return float(loss(jax.tree.unflatten(tree, moved)))

        fd = (shifted(STEP) - shifted(-STEP)) / (2 * STEP)
        np.testing.assert_allclose(float(grad), fd, rtol=FD_RTOL, atol=FD_ATOL)


def _program(kfn: Any, paired: bool) -> Callable[..., Any]:
    """jit(vmap(value_and_grad)) of sum(c_nngp * NNGP) + sum(c_ntk * NTK) with respect to
    (params, x1) or (params, x1, x2), every argument batched."""

    def loss(params, x1, x2, c_nngp, c_ntk):  # type: ignore[no-untyped-def]
        nngp, ntk = kfn(x1, x2, get=("nngp", "ntk"), params=params)
        return jnp.sum(c_nngp * nngp) + jnp.sum(c_ntk * ntk)

    if paired:
        return jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2))))

    def alone(params, x1, c_nngp, c_ntk):  # type: ignore[no-untyped-def]
        return loss(params, x1, None, c_nngp, c_ntk)

    return jax.jit(jax.vmap(jax.value_and_grad(alone, argnums=(0, 1))))


class GradientCases:
    """The cases of one network's gradient checks in one form (x2 absent or given) and
    dtype: `add` each case, `run` them all as one program call, then read each case's
    value and gradients (with respect to the flattened hyper-parameters, x1 and x2)."""

    def __init__(self, kfn: Any, x2_rows: int | None, dtype: type) -> None:
        self.kfn, self.dtype, self.x2_rows = kfn, dtype, x2_rows
        self.leaves, self.tree = jax.tree.flatten(kfn.params)
        self.entries: list[tuple[Any, ...]] = []

    @property
    def paired(self) -> bool:
        """Whether x2 is given (else x1 with itself)."""
        return self.x2_rows is not None

    def add(
        self,
        x1: np.ndarray,
        x2: np.ndarray | None,
        cotangents: tuple[np.ndarray, np.ndarray],
        leaves: list[float] | None = None,
    ) -> int:
        """A case: inputs, the cotangents of (NNGP, NTK), the hyper-parameters (None: the
        network's); its index."""
        assert (x2 is not None) == self.paired
        params = [np.asarray(v, self.dtype) for v in (leaves or self.leaves)]
        inputs = (x1,) if x2 is None else (x1, x2)
        cast = tuple(np.asarray(a, self.dtype) for a in (*inputs, *cotangents))
        self.entries.append((params, *cast))
        return len(self.entries) - 1

    def cotangents(self, x1: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Random cotangents of both kernels for inputs shaped like x1 (and x2)."""
        n2 = len(x1) if self.x2_rows is None else self.x2_rows
        rng = np.random.RandomState(seed)
        return rng.randn(len(x1), n2), rng.randn(len(x1), n2)

    def run(self) -> None:
        """Runs every case added, as one batched call of one compiled program."""
        columns = list(zip(*self.entries, strict=True))
        params = [np.stack(leaf) for leaf in zip(*columns[0], strict=True)]
        stacked = [np.stack(column) for column in columns[1:]]
        values, grads = _program(self.kfn, self.paired)(
            jax.tree.unflatten(self.tree, params), *stacked
        )
        self.values = np.asarray(values)
        self.param_grads = [np.asarray(g) for g in jax.tree.leaves(grads[0])]
        self.input_grads = [np.asarray(g) for g in grads[1:]]

    def all_finite(self, case: int) -> bool:
        """Whether the case's value and every gradient of it are finite."""
        parts = [self.values[case], *(g[case] for g in self.param_grads + self.input_grads)]
        return all(bool(np.all(np.isfinite(p))) for p in parts)

    def add_input_differences(self, x1: np.ndarray, x2: np.ndarray | None, seed: int) -> int:
        """A base case and the central-difference points around it along every coordinate
        of every input; its index (check with `assert_input_gradients_match`)."""
        cotangents = self.cotangents(x1, seed)
        base = self.add(x1, x2, cotangents)
        inputs = [x1] if x2 is None else [x1, x2]
        for which, x in enumerate(inputs):
            for k in range(x.size):
                for sign in (1, -1):
                    moved = [a.copy() for a in inputs]
                    moved[which].flat[k] += sign * STEP
                    self.add(moved[0], moved[1] if self.paired else None, cotangents)
        return base

    def _slope(self, plus: int) -> float:
        """The central difference of the cases `plus` (+STEP) and `plus + 1` (-STEP)."""
        return float(self.values[plus] - self.values[plus + 1]) / (2 * STEP)

    def assert_input_gradients_match(self, base: int) -> None:
        point = base + 1
        for grads in self.input_grads:
            fd = np.empty(grads.shape[1:])
            for k in range(fd.size):
                fd.flat[k] = self._slope(point)
                point += 2
            np.testing.assert_allclose(grads[base], fd, rtol=FD_RTOL, atol=FD_ATOL)

    def add_hyper_differences(self, x1: np.ndarray, x2: np.ndarray | None, seed: int) -> int:
        """A base case and the central-difference points around it along every
        hyper-parameter; its index (check with `assert_hyper_gradients_match_at`)."""
        cotangents = self.cotangents(x1, seed)
        base = self.add(x1, x2, cotangents)
        for i in range(len(self.leaves)):
            for sign in (1, -1):
                moved = list(self.leaves)
                moved[i] = moved[i] + sign * STEP
                self.add(x1, x2, cotangents, moved)
        return base

    def assert_hyper_gradients_match_at(self, base: int) -> None:
        for i, grads in enumerate(self.param_grads):
            fd = self._slope(base + 1 + 2 * i)
            np.testing.assert_allclose(grads[base], fd, rtol=FD_RTOL, atol=FD_ATOL)
