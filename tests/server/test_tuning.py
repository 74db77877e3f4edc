"""The log marginal likelihood and tuning, served and in process: MarginalLikelihood equals
the engine's `marginal_likelihood` (value and gradients), and Tune recovers known
hyper-parameters from data drawn from an NNGP prior.

The statistical error, derived: targets Y (N x k, k independent outputs) drawn from
N(0, C(theta*)), C = K_NNGP(theta) + s I, have the log likelihood the tuner maximizes; its
maximizer theta_hat is asymptotically N(theta*, F^-1) with the Fisher information
F_ij = k/2 tr(C^-1 dC/dtheta_i C^-1 dC/dtheta_j) (Rasmussen & Williams 2006, sec. 5.4;
Cramer-Rao). Here (N = 500, k = 4) that gives sigma(W_std) = 0.042 and sigma(b_std) =
0.031, computed in the test from jax's Jacobian of the kernel. The tuned values must land
within 4 sigma of the truth (a two-sided Gaussian tail of 6e-5 each), from a start more
than 10 sigma away (so that not tuning fails), and the tuned log likelihood must be at
least the truth's (the maximizer's is, by definition).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve_engine import kernel_fn, predict
from ntkserve_engine.predict.tuning import tune

from tests.conftest import ServerProcess

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
W_STD, B_STD, NOISE, N, OUTPUTS = 1.6, 0.4, 0.01, 500, 4
W_PATH, B_PATH = "architecture.layers[0].dense.w_std", "architecture.layers[0].dense.b_std"
BOUNDS = {W_PATH: (0.1, 10.0), B_PATH: (0.1, 10.0)}
STEPS = 80  # converged within ~60 (measured: the log likelihood changes < 1e-3 after)
RTOL = 1e-10


def _arch(w_std: float, b_std: float) -> Any:
    return stax.serial(stax.Dense(512, W_std=w_std, b_std=b_std), stax.Erf(), stax.Dense(1))


@pytest.fixture(scope="module")
def prior_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y drawn from the NNGP prior with noise, and the Cramer-Rao sigma of (W, b)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, 4))
    true = kernel_fn(_arch(W_STD, B_STD))
    c = np.asarray(true(x, None, get="nngp")) + NOISE * np.eye(N)
    y = np.linalg.cholesky(c) @ rng.standard_normal((N, OUTPUTS))
    jacobian = jax.jacfwd(lambda p: true(x, None, get="nngp", params=p))(true.params)
    by_path = dict(zip(true.hyper_parameter_paths, jax.tree.leaves(jacobian), strict=True))
    solved = [np.linalg.solve(c, np.asarray(by_path[p])) for p in (W_PATH, B_PATH)]
    fisher = np.array([[OUTPUTS / 2 * np.sum(a * b.T) for b in solved] for a in solved])
    sigma = np.sqrt(np.diag(np.linalg.inv(fisher)))
    return x, y, sigma


def _check_recovered(values: dict[str, float], sigma: np.ndarray) -> None:
    for path, truth, s in ((W_PATH, W_STD, sigma[0]), (B_PATH, B_STD, sigma[1])):
        assert abs(1.0 - truth) > 10 * s  # the start is far
        assert abs(values[path] - truth) <= 4 * s, (path, values[path], truth, s)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    proc = ServerProcess(tmp_path_factory.mktemp("tuning-data"))
    with proc, Client(proc.target, timeout=300) as c:
        yield c


def test_tune_recovers_the_prior_s_hyper_parameters(client: Client, prior_data: Any) -> None:
    x, y, sigma = prior_data
    tuned = client.tune(_arch(1.0, 1.0), x, y, BOUNDS, "nngp", NOISE, True, steps=STEPS)
    print(tuned.values, sigma)
    _check_recovered(tuned.values, sigma)
    truth = predict.marginal_likelihood(kernel_fn(_arch(W_STD, B_STD)), x, y, "nngp", NOISE, True)
    assert tuned.log_marginal_likelihood >= truth.value
    assert len(tuned.trace) == STEPS and tuned.trace[-1] > tuned.trace[0]
    registered = client.get_architecture(tuned.architecture_id)
    dense = registered.architecture.layers[0].dense
    assert (dense.w_std, dense.b_std) == (tuned.values[W_PATH], tuned.values[B_PATH])
    again = client.marginal_likelihood(tuned.architecture_id, x, y, "nngp", NOISE, True)
    assert again.value == pytest.approx(tuned.log_marginal_likelihood, rel=RTOL)


def test_tune_in_process_recovers_them_too(prior_data: Any) -> None:
    x, y, sigma = prior_data
    tuned = tune(kernel_fn(_arch(1.0, 1.0)), x, y, BOUNDS, "nngp", NOISE, True, steps=STEPS)
    _check_recovered(tuned.values, sigma)
    tuned_kfn = kernel_fn(tuned.architecture)
    assert tuned_kfn.architecture.layers[0].dense.w_std == tuned.values[W_PATH]


@pytest.mark.parametrize("get, absolute", [("nngp", False), ("ntkgp", True)])
def test_served_likelihood_and_gradients_are_the_in_process_ones(
    client: Client, get: str, absolute: bool
) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    arch = _arch(1.3, 0.2)
    want = predict.marginal_likelihood(kernel_fn(arch), x, y, get, 0.05, absolute, grad=True)
    got = client.marginal_likelihood(arch, x, y, get, 0.05, absolute, ["*"], diag_reg_grad=True)
    assert got.value == pytest.approx(want.value, rel=RTOL)
    assert got.diag_reg_grad == pytest.approx(want.diag_reg_grad, rel=RTOL)
    paths = kernel_fn(arch).hyper_parameter_paths
    grads = dict(zip(paths, map(float, jax.tree.leaves(want.params_grad)), strict=True))
    assert got.hyper_parameter_grads.keys() == grads.keys()
    for path, value in grads.items():
        assert got.hyper_parameter_grads[path] == pytest.approx(value, rel=1e-8, abs=1e-8), path
    assert got.solve.method == want.factorization.method


def test_bad_tuning_requests_name_their_field(client: Client) -> None:
    x, y = np.ones((4, 3)), np.ones(4)
    with pytest.raises(errors.InvalidArgumentError) as seen:
        client.tune(_arch(1.0, 1.0), x, y, {"architecture.layers[9].dense.w_std": (0.1, 1.0)})
    assert seen.value.field_violations[0][0] == "parameters[0].path"
    with pytest.raises(errors.InvalidArgumentError, match="0 < lower < upper"):
        client.tune(_arch(1.0, 1.0), x, y, {W_PATH: (1.0, 0.5)})
    with pytest.raises(errors.InvalidArgumentError, match="must be NNGP or NTKGP"):
        client.marginal_likelihood(_arch(1.0, 1.0), x, y, "ntk")
    with pytest.raises(errors.InvalidArgumentError) as seen:
        client.marginal_likelihood(_arch(1.0, 1.0), x, y[:3])
    assert seen.value.field_violations[0][0] == "y_train.shape"
