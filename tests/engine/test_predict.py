"""`ntkserve_engine.predict` against an independent float64 reference of the same formulas
(matrix exponentials by `scipy.linalg.expm` and dense solves, not eigendecompositions), on
neural-tangents' documented semantics, on ill-conditioned kernels, and on real data
(scikit-learn's bundled digits).

Tolerances: both sides are float64 with condition numbers below ~1e4 here, so 1e-8 relative
leaves four orders of magnitude for rounding."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from ntkserve import stax
from ntkserve_engine import kernel_fn, predict
from ntkserve_engine.kernels.errors import InputError
from ntkserve_engine.predict import FactorizationError
from ntkserve_engine.predict.factorization import factorize, regularized

from tests.digits import DIGITS_CASES, MIN_ACCURACY, digits

RTOL = 1e-8
ETA = 0.7
ARCH = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.2), stax.Erf(), stax.Dense(1))
RNG = np.random.default_rng(5)
X_TRAIN, X_TEST = RNG.standard_normal((12, 5)), RNG.standard_normal((7, 5))
Y_TRAIN = RNG.standard_normal((12, 3))
KFN = kernel_fn(ARCH)
KERNELS: dict[str, dict[str, Any]] = {
    part: dict(zip(("nngp", "ntk"), map(np.asarray, KFN(*xs, get=("nngp", "ntk"))), strict=True))
    for part, xs in (
        ("dd", (X_TRAIN, None)),
        ("td", (X_TEST, X_TRAIN)),
        ("tt", (X_TEST, None)),
    )
}


def _close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.max(np.abs(want)))


def _reg(k: np.ndarray, diag_reg: float, absolute: bool = False) -> np.ndarray:
    scale = 1.0 if absolute else np.trace(k) / len(k)
    return k + diag_reg * scale * np.eye(len(k))


def _decay(theta: np.ndarray, t: float) -> np.ndarray:
    """e(t) = exp(-eta t theta / n), n = y_train.size."""
    return scipy.linalg.expm(-ETA * t * theta / Y_TRAIN.size)


def _grown(theta: np.ndarray, t: float, b: np.ndarray) -> np.ndarray:
    """theta^-1 (I - e(t)) b."""
    return np.linalg.solve(theta, (np.eye(len(theta)) - _decay(theta, t)) @ b)


@pytest.mark.parametrize("diag_reg, absolute", [(0.0, False), (1e-2, False), (0.3, True)])
def test_gradient_descent_mse_matches_the_reference(diag_reg: float, absolute: bool) -> None:
    theta = _reg(KERNELS["dd"]["ntk"], diag_reg, absolute)
    f_train_0 = RNG.standard_normal(Y_TRAIN.shape)
    f_test_0 = RNG.standard_normal((7, 3))
    fn = predict.gradient_descent_mse(
        KERNELS["dd"]["ntk"], Y_TRAIN, ETA, diag_reg, diag_reg_absolute_scale=absolute
    )
    ts = np.array([[0.0, 0.5, 3.0], [20.0, 400.0, 1e4]])
    train, test = fn(ts, f_train_0, f_test_0, KERNELS["td"]["ntk"])
    assert train.shape == (2, 3, 12, 3) and test.shape == (2, 3, 7, 3)
    for index, t in np.ndenumerate(ts):
        residual = f_train_0 - Y_TRAIN
        _close(train[index], Y_TRAIN + _decay(theta, t) @ residual)
        _close(test[index], f_test_0 - KERNELS["td"]["ntk"] @ _grown(theta, t, residual))
    train_inf, test_inf = fn(None, f_train_0, f_test_0, KERNELS["td"]["ntk"])
    _close(train_inf, Y_TRAIN)
    _close(test_inf, f_test_0 + KERNELS["td"]["ntk"] @ np.linalg.solve(theta, Y_TRAIN - f_train_0))


def test_gradient_descent_mse_semantics() -> None:
    """t=0 gives the initial outputs; t=None is the limit of large t; fx_train_0=None
    predicts the test set alone (from zero outputs), fx_test_0=None the training set."""
    fn = predict.gradient_descent_mse(KERNELS["dd"]["ntk"], Y_TRAIN, diag_reg=1e-3)
    f0 = RNG.standard_normal(Y_TRAIN.shape)
    train, test = fn(0.0, f0, 1.5, KERNELS["td"]["ntk"])
    _close(train, f0)
    _close(test, np.full((7, 3), 1.5))
    late = fn(1e9, None, 0.0, KERNELS["td"]["ntk"])
    _close(late, fn(None, None, 0.0, KERNELS["td"]["ntk"]))
    _close(fn(2.0, f0), fn(2.0, f0, 0.0, KERNELS["td"]["ntk"])[0])


@pytest.mark.parametrize("t", [0.0, 2.5, 300.0, None])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_ensemble_matches_the_reference(get: str, t: float | None) -> None:
    diag_reg = 1e-2
    fn = predict.gradient_descent_mse_ensemble(KFN, X_TRAIN, Y_TRAIN, ETA, diag_reg)
    mean, cov = fn(t, X_TEST, get, compute_cov=True)
    k_dd, k_td, k_tt = KERNELS["dd"]["nngp"], KERNELS["td"]["nngp"], KERNELS["tt"]["nngp"]
    theta = _reg(KERNELS["dd"][get], diag_reg)
    theta_td = KERNELS["td"][get]
    if t is None:
        a = np.linalg.solve(theta, theta_td.T).T
    else:
        a = np.linalg.solve(theta, (np.eye(12) - _decay(theta, t)) @ theta_td.T).T
    _close(mean, a @ Y_TRAIN)
    if get == "nngp":
        doubled = np.linalg.solve(theta, theta_td.T) if t is None else _grown(theta, 2 * t, k_td.T)
        _close(cov, k_tt - k_td @ doubled)
    else:
        _close(cov, k_tt + a @ k_dd @ a.T - a @ k_td.T - k_td @ a.T)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_ensemble_on_the_training_set(get: str) -> None:
    fn = predict.gradient_descent_mse_ensemble(KFN, X_TRAIN, Y_TRAIN, ETA, 1e-2)
    theta = _reg(KERNELS["dd"][get], 1e-2)
    mean, cov = fn(4.0, None, get, compute_cov=True)
    e = _decay(theta, 4.0)
    _close(mean, (np.eye(12) - e) @ Y_TRAIN)
    if get == "nngp":
        _close(cov, theta @ _decay(theta, 8.0))
    else:
        _close(cov, e @ KERNELS["dd"]["nngp"] @ e)
    mean_inf, cov_inf = fn(None, None, get, compute_cov=True)
    _close(mean_inf, Y_TRAIN)
    assert not np.any(cov_inf)


def test_ensemble_shapes_and_names() -> None:
    """get=None is ("nngp", "ntk") as a namedtuple; a string gives one value; t's shape
    leads; no covariance: means alone."""
    fn = predict.gradient_descent_mse_ensemble(KFN, X_TRAIN, Y_TRAIN)
    both = fn(np.ones((2, 2)), X_TEST, compute_cov=True)
    assert both._fields == ("nngp", "ntk")
    assert both.ntk.mean.shape == (2, 2, 7, 3) and both.ntk.covariance.shape == (2, 2, 7, 7)
    assert fn(1.0, X_TEST, "ntk").shape == (7, 3)
    _close(fn(1.0, X_TEST, ("ntk",)).ntk, fn(1.0, X_TEST, "ntk"))


@pytest.mark.parametrize("t", [None, np.array([0.0, 3.0, np.inf])])
@pytest.mark.parametrize("x_test", ["test", "train"])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_marginal_variances_are_the_full_covariance_diagonal(get: str, x_test: str, t: Any) -> None:
    """What a served model answers for covariance "marginal" (from the test NNGP's diagonal,
    never the test x test matrix) is the diagonal of the full covariance."""
    fn = predict.gradient_descent_mse_ensemble(KFN, X_TRAIN, Y_TRAIN, ETA, 1e-2)
    on_test = x_test == "test"
    mean, full = fn(t, X_TEST if on_test else None, get, compute_cov=True)
    k_td = {k: KERNELS["td"][k] for k in ("nngp", "ntk")} if on_test else None
    k_tt = {"nngp": np.diag(KERNELS["tt"]["nngp"])} if on_test else None
    got_mean, marginal = fn.predict_kernels(t, get, k_td, k_tt, "marginal")
    _close(got_mean, mean)
    _close(marginal, np.diagonal(full, axis1=-2, axis2=-1))
    assert marginal.shape == full.shape[:-1]


def test_gp_inference_takes_a_diagonal_for_marginal_variances() -> None:
    dd, td, tt = KERNELS["dd"], KERNELS["td"], KERNELS["tt"]
    fn = predict.gp_inference(dd, Y_TRAIN, diag_reg=1e-3)
    diagonal = {k: np.diag(v) for k, v in tt.items()}
    for get in ("nngp", "ntk", "ntkgp"):
        _, full = fn(get, td, tt)
        _, marginal = fn(get, td, diagonal)
        _close(marginal, np.diag(full))
    with pytest.raises(InputError, match=r"k_test_test.nngp.*\(7,\)"):
        fn("nngp", td, {"nngp": np.ones(6)})


@pytest.mark.parametrize("get", ["nngp", "ntk", "ntkgp"])
def test_gp_inference_matches_the_reference(get: str) -> None:
    kernel = "ntk" if get == "ntkgp" else get
    dd, td, tt = KERNELS["dd"], KERNELS["td"], KERNELS["tt"]
    fn = predict.gp_inference(dd, Y_TRAIN, diag_reg=1e-3)
    mean, cov = fn(get, td, tt)
    theta = _reg(dd[kernel], 1e-3)
    a = np.linalg.solve(theta, td[kernel].T).T
    _close(mean, a @ Y_TRAIN)
    if get == "ntk":
        _close(cov, tt["nngp"] + a @ dd["nngp"] @ a.T - a @ td["nngp"].T - td["nngp"] @ a.T)
    else:
        _close(cov, tt[kernel] - a @ td[kernel].T)
    assert fn(get, td).shape == (7, 3)


def test_relative_diag_reg_is_scaled_by_the_mean_diagonal() -> None:
    k = KERNELS["dd"]["nngp"]
    relative = predict.gp_inference(k, Y_TRAIN, diag_reg=0.1)("nngp", KERNELS["td"]["nngp"])
    scale = np.trace(k) / len(k)
    absolute = predict.gp_inference(k, Y_TRAIN, 0.1 * scale, diag_reg_absolute_scale=True)
    _close(relative, absolute("nngp", KERNELS["td"]["nngp"]))


def _deep_relu(depth: int) -> stax.Architecture:
    """ReLU at criticality (W_std^2 = 2) with biases: correlations approach 1 with depth."""
    dense = stax.Dense(64, W_std=2**0.5, b_std=1.0)
    return stax.serial(*[layer for _ in range(depth) for layer in (dense, stax.Relu())], dense)


def _blocks(arch: stax.Architecture, x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Train-train, test-train and test-test kernels, from one x2=None program over both."""
    joint = np.concatenate([x, X_TEST])
    both = kernel_fn(arch)(joint, None, get=("nngp", "ntk"))
    n = len(x)
    return {
        part: {
            name: np.asarray(k)[rows, cols] for name, k in zip(("nngp", "ntk"), both, strict=True)
        }
        for part, rows, cols in (
            ("dd", slice(None, n), slice(None, n)),
            ("td", slice(n, None), slice(None, n)),
            ("tt", slice(n, None), slice(n, None)),
        )
    }


@pytest.mark.parametrize("arch", [ARCH, _deep_relu(20)], ids=["erf", "deep-relu"])
def test_ill_conditioned_kernels_give_finite_predictions_and_say_how(
    arch: stax.Architecture,
) -> None:
    """Inputs duplicated with disagreeing targets and diag_reg=0, on a shallow network (a
    kernel singular to rounding) and a 20-layer ReLU one (whose arccos rounding at rho = 1
    leaves it at condition ~3e8): never NaN, and the method used and its condition number
    are reported."""
    x = np.concatenate([X_TRAIN, X_TRAIN[:4]])
    y = np.concatenate([Y_TRAIN, Y_TRAIN[:4] + 0.5])
    k = _blocks(arch, x)
    inference = predict.gp_inference(k["dd"], y)
    for get in ("nngp", "ntk", "ntkgp"):
        mean, cov = inference(get, k["td"], k["tt"])
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
    for name in ("nngp", "ntk"):
        factorization = inference.factorization(name)
        assert factorization.condition <= 1e12
        solved = k["dd"][name] + factorization.jitter * np.eye(len(x))
        if factorization.method != "eigh-clipped":  # LAPACK's 1-norm estimate, within N
            true = np.linalg.cond(solved)
            assert true / len(x) <= factorization.condition <= true * len(x)
        if arch is ARCH:  # duplicates: singular to rounding, so plain Cholesky cannot do
            assert factorization.method in ("cholesky+jitter", "eigh-clipped"), factorization
            assert factorization.jitter > 0
        descent = predict.gradient_descent_mse(k["dd"][name], y)
        for t in (None, 10.0, 1e12):
            train, test = descent(t, 0.0, 0.0, k["td"][name])
            assert np.all(np.isfinite(train)) and np.all(np.isfinite(test))
    ensemble = predict.gradient_descent_mse_ensemble(KFN, x, y)
    for t in (None, 10.0, 1e12):
        mean, cov = ensemble(t, X_TEST, "ntk", compute_cov=True)
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))


def test_a_kernel_with_nothing_to_solve_is_refused() -> None:
    with pytest.raises(FactorizationError, match="no positive eigenvalue"):
        predict.gp_inference(np.zeros((4, 4)), np.ones(4))("nngp", np.ones((2, 4)))
    with pytest.raises(InputError, match=r"^k_train_train.nngp: has 1 non-finite entries"):
        k = np.eye(4)
        k[1, 2] = np.nan
        predict.gp_inference(k, np.ones(4))("nngp", np.ones((2, 4)))


def test_bad_arguments_name_the_parameter() -> None:
    k = KERNELS["dd"]["ntk"]
    with pytest.raises(InputError, match="y_train"):
        predict.gradient_descent_mse(k, Y_TRAIN[:5])
    with pytest.raises(InputError, match="trace_axes"):
        predict.gradient_descent_mse(k, Y_TRAIN, trace_axes=(0,))
    with pytest.raises(InputError, match=r"^t: times must be >= 0"):
        predict.gradient_descent_mse(k, Y_TRAIN)(-1.0)
    with pytest.raises(InputError, match="diag_reg"):
        predict.gp_inference(k, Y_TRAIN, diag_reg=-1.0)("ntk", KERNELS["td"]["ntk"])
    with pytest.raises(InputError, match="get"):
        predict.gradient_descent_mse_ensemble(KFN, X_TRAIN, Y_TRAIN)(get="ntkgp")


def test_max_learning_rate() -> None:
    k = KERNELS["dd"]["ntk"]
    largest = np.linalg.eigvalsh(k)[-1]
    assert predict.max_learning_rate(k) == pytest.approx(2 * 12 / (largest + 1e-12), RTOL)
    got = predict.max_learning_rate(k, y_train_size=36, momentum=0.9)
    assert got == pytest.approx(2 * 1.9 * 36 / (largest + 1e-12), RTOL)


@pytest.mark.parametrize("arch, shape", DIGITS_CASES)
def test_digits_are_classified(arch: stax.Architecture, shape: tuple[int, ...]) -> None:
    """NNGP and NTK regression on one-hot targets classify scikit-learn's 8x8 digits: 1,200
    to train, the other 597 held out, at >= 98 % (99.3-99.7 % measured)."""
    data = digits(shape)
    fn = predict.gradient_descent_mse_ensemble(
        kernel_fn(arch), data.x_train, data.y_train, diag_reg=1e-4
    )
    out = fn(None, data.x_test)
    for get in ("nngp", "ntk"):
        accuracy = data.accuracy(getattr(out, get))
        print(f"{get}: {accuracy:.4f}")
        assert accuracy >= MIN_ACCURACY, (get, accuracy)


def _reference_likelihood(kfn: Any, x: np.ndarray, y: np.ndarray, get: str, absolute: bool) -> Any:
    """log p(y) by jax's own slogdet and solve, differentiated by jax: independent of the
    closed-form adjoint under test."""

    def value(params: Any, diag_reg: Any) -> Any:
        k = kfn(x, None, get="ntk" if get == "ntkgp" else "nngp", params=params)
        scale = 1.0 if absolute else jnp.trace(k) / len(k)
        kr = k + diag_reg * scale * jnp.eye(len(k))
        fit = jnp.sum(y * jnp.linalg.solve(kr, y))
        return (
            -0.5 * fit
            - 0.5 * y.shape[1] * jnp.linalg.slogdet(kr)[1]
            - 0.5 * y.size * jnp.log(2 * jnp.pi)
        )

    return jax.value_and_grad(value, argnums=(0, 1))


@pytest.mark.parametrize("get", ["nngp", "ntkgp"])
@pytest.mark.parametrize("absolute", [False, True])
def test_marginal_likelihood_and_its_gradients(get: str, absolute: bool) -> None:
    x, y = X_TRAIN, Y_TRAIN
    got = predict.marginal_likelihood(KFN, x, y, get, 0.05, absolute, grad=True)
    value, (params_grad, diag_reg_grad) = _reference_likelihood(KFN, x, y, get, absolute)(
        KFN.params, 0.05
    )
    assert got.factorization.method == "cholesky"
    assert got.value == pytest.approx(float(value), rel=RTOL)
    assert got.diag_reg_grad == pytest.approx(float(diag_reg_grad), rel=RTOL)
    for a, b in zip(jax.tree.leaves(got.params_grad), jax.tree.leaves(params_grad), strict=True):
        assert float(a) == pytest.approx(float(b), rel=RTOL, abs=RTOL * abs(got.value))
    plain = predict.marginal_likelihood(KFN, x, y, get, 0.05, absolute)
    assert plain.value == got.value and plain.params_grad is None


def test_marginal_likelihood_of_a_singular_kernel_is_finite() -> None:
    x = np.concatenate([X_TRAIN, X_TRAIN[:4]])
    y = np.concatenate([Y_TRAIN, Y_TRAIN[:4] + 0.5])
    got = predict.marginal_likelihood(KFN, x, y, grad=True)
    assert got.factorization.method != "cholesky"
    assert np.isfinite(got.value) and np.isfinite(got.diag_reg_grad)
    with pytest.raises(InputError, match="get"):
        predict.marginal_likelihood(KFN, x, y, "ntk")


def test_each_method_solves_and_inverts_the_matrix_it_reports() -> None:
    """Well conditioned: Cholesky; singular: Cholesky with jitter; indefinite (round-off
    gone wrong): clipped eigenvalues. `solve`, `inverse` and `logdet` are those of the
    matrix the method says it solved."""
    features = RNG.standard_normal((6, 9))
    cases = {
        "cholesky": features @ features.T,
        "cholesky+jitter": np.ones((6, 6)),
        "eigh-clipped": np.array([[1.0, 2.0], [2.0, 1.0]]),
    }
    for method, k in cases.items():
        f = factorize(regularized(k, 0.0, False))
        assert f.method == method
        if f.eigenvalues is None:
            solved = k + f.jitter * np.eye(len(k))
            want, logdet = np.linalg.inv(solved), np.linalg.slogdet(solved)[1]
        else:  # eigenvalues raised to lambda_max / 1e12 (numpy's eigh, independently)
            values, vectors = np.linalg.eigh(k)
            clipped = np.maximum(values, values[-1] / 1e12)
            want, logdet = (vectors / clipped) @ vectors.T, np.sum(np.log(clipped))
        scale = np.max(np.abs(want))
        np.testing.assert_allclose(f.inverse(), want, atol=1e-8 * scale)
        b = RNG.standard_normal((len(k), 2))
        np.testing.assert_allclose(f.solve(b), want @ b, atol=1e-8 * scale * np.max(np.abs(b)))
        assert f.logdet() == pytest.approx(logdet, rel=1e-8)
