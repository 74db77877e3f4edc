"""Served models (ModelService) against real servers: predictions equal the engine's
in-process ones, models survive restarts (SIGKILL too), tenants cannot see each other's,
ill-conditioned kernels give finite predictions, bad requests name their field, and
held-out digits are classified.

Tolerances: served and in-process predictions are float64 from the same formulas on kernels
computed by the same programs (tiles against one call: agreement to a few ulps), solved by
the same LAPACK calls; 1e-10 relative leaves five orders of magnitude for rounding.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jax
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve.v1 import model_service_pb2_grpc
from ntkserve_engine import kernel_fn, predict

from tests.conftest import ServerProcess
from tests.digits import DIGITS_CASES, MIN_ACCURACY, digits

jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
RTOL = 1e-10
ARCH = stax.serial(stax.Dense(64, W_std=1.3, b_std=0.2), stax.Erf(), stax.Dense(1))
RNG = np.random.default_rng(3)
X_TRAIN, X_TEST = RNG.standard_normal((30, 5)), RNG.standard_normal((8, 5))
Y_TRAIN = RNG.standard_normal((30, 2))
ETA, DIAG_REG = 0.7, 1e-3
ALICE = "alice-token-models-0123456789"
BOB = "bob-token-models-9876543210ab"


def _close(got: Any, want: Any) -> None:
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.max(np.abs(want)))


@pytest.fixture(scope="module")
def models_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("models-data")
    tokens = data / "tokens.txt"
    tokens.write_text(f"{ALICE} alice\n{BOB} bob\n")
    proc = ServerProcess(data / "server", "--auth-tokens", str(tokens))
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def alice(models_server: ServerProcess) -> Iterator[Client]:
    with Client(models_server.target, token=ALICE, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def bob(models_server: ServerProcess) -> Iterator[Client]:
    with Client(models_server.target, token=BOB, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def ntk_model(alice: Client) -> Any:
    """tile=8: the 30-row training kernel is assembled from 10 tiles, 6 of them mirrored."""
    return alice.fit(ARCH, X_TRAIN, Y_TRAIN, "ntk", DIAG_REG, learning_rate=ETA, tile=8)


def _in_process(t: Any, x_test: Any, get: str, covariance: str | None) -> Any:
    ensemble = predict.gradient_descent_mse_ensemble(
        kernel_fn(ARCH), X_TRAIN, Y_TRAIN, ETA, DIAG_REG
    )
    times = None if t is None else np.asarray(t)
    want = ensemble(times, x_test, get, compute_cov=covariance is not None)
    if covariance != "marginal":
        return want
    return predict.Gaussian(want.mean, np.diagonal(want.covariance, axis1=-2, axis2=-1))


@pytest.mark.parametrize("covariance", [None, "marginal", "full"])
@pytest.mark.parametrize("t", [None, 2.5, [0.0, 3.0, float("inf")]])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_served_predictions_are_the_in_process_ones(
    ntk_model: Any, get: str, t: Any, covariance: str | None
) -> None:
    for x_test in (X_TEST, None):
        got = ntk_model.predict(x_test, t, get, covariance)
        want = _in_process(t, x_test, get, covariance)
        if covariance is None:
            assert got.shape == want.shape
            _close(got, want)
        else:
            assert got.mean.shape == want.mean.shape
            assert got.covariance.shape == want.covariance.shape
            _close(got.mean, want.mean)
            _close(got.covariance, want.covariance)


@pytest.mark.parametrize("covariance", [None, "marginal"])
@pytest.mark.parametrize(
    "get, t",
    [("ntk", None), ("ntk", [0.5, 4.0]), ("ntkgp", None)],  # ntkgp: t = inf only
)
def test_streamed_predictions_are_the_unary_ones(
    ntk_model: Any, get: str, t: Any, covariance: str | None
) -> None:
    """PredictStream in blocks of 3 rows (8 test points: blocks of 3, 3 and 2) answers what
    one Predict answers (to float64 rounding: BLAS may order a 3-row product's sums unlike
    an 8-row one's)."""
    unary = ntk_model.predict(X_TEST, t, get, covariance)
    streamed = ntk_model.predict(X_TEST, t, get, covariance, stream=True, block_rows=3)
    pairs = [(streamed, unary)] if covariance is None else list(zip(streamed, unary, strict=True))
    for got, want in pairs:
        assert got.shape == want.shape
        _close(got, want)


def test_a_full_covariance_is_not_streamed(ntk_model: Any) -> None:
    with pytest.raises(errors.InvalidArgumentError) as seen:
        ntk_model.predict(X_TEST, covariance="full", stream=True)
    assert seen.value.field_violations[0][0] == "header.covariance"


def test_ntkgp_and_gp_inference_are_the_in_process_ones(alice: Client, ntk_model: Any) -> None:
    kfn = kernel_fn(ARCH)
    kernels = {
        "dd": kfn(X_TRAIN, None, get=("nngp", "ntk")),
        "td": kfn(X_TEST, X_TRAIN, get=("nngp", "ntk")),
        "tt": kfn(X_TEST, None, get=("nngp", "ntk")),
    }
    as_dict = {
        k: dict(zip(("nngp", "ntk"), map(np.asarray, v), strict=True)) for k, v in kernels.items()
    }
    inference = predict.gp_inference(as_dict["dd"], Y_TRAIN, DIAG_REG)
    for get in ("nngp", "ntk", "ntkgp"):
        want = inference(get, as_dict["td"], as_dict["tt"])
        got = ntk_model.predict(X_TEST, None, get, "full")
        _close(got.mean, want.mean)
        _close(got.covariance, want.covariance)
    served = alice.gp_inference(
        ARCH, X_TRAIN, Y_TRAIN, X_TEST, "ntkgp", DIAG_REG, covariance="full"
    )
    _close(served.covariance, inference("ntkgp", as_dict["td"], as_dict["tt"]).covariance)


def test_a_model_is_content_addressed_listed_and_deleted(alice: Client, ntk_model: Any) -> None:
    again = alice.fit(ARCH, X_TRAIN, Y_TRAIN, "ntk", DIAG_REG, learning_rate=ETA, tile=8)
    assert again.id == ntk_model.id and again.info.create_time == ntk_model.info.create_time
    other = alice.fit(ARCH, X_TRAIN, Y_TRAIN, "nngp", DIAG_REG)
    assert other.id != ntk_model.id
    assert other.info.solves["nngp"].method == "cholesky"
    want_logp = predict.marginal_likelihood(kernel_fn(ARCH), X_TRAIN, Y_TRAIN, "nngp", DIAG_REG)
    assert other.info.log_marginal_likelihood == pytest.approx(want_logp.value, rel=RTOL)
    ids = [m.model_id for m in alice.models()]
    assert ntk_model.id in ids and other.id in ids
    assert alice.model(other.id).info == other.info
    other.delete()
    assert other.id not in [m.model_id for m in alice.models()]
    with pytest.raises(errors.NotFoundError, match="no model"):
        other.predict(X_TEST)


def test_tenants_cannot_see_each_others_models(alice: Client, bob: Client, ntk_model: Any) -> None:
    assert ntk_model.id not in [m.model_id for m in bob.models()]
    for call in (
        lambda: bob.model(ntk_model.id),
        lambda: bob.delete_model(ntk_model.id),
    ):
        with pytest.raises(errors.NotFoundError) as seen:
            call()
        assert "no model with id" in str(seen.value)
    # Bob fitting the same data gets his own model, under another id.
    mine = bob.fit(ARCH, X_TRAIN, Y_TRAIN, "ntk", DIAG_REG, learning_rate=ETA)
    assert mine.id != ntk_model.id
    _close(mine.predict(X_TEST, 1.0), ntk_model.predict(X_TEST, 1.0))
    assert ntk_model.id in [m.model_id for m in alice.models()]


def test_ill_conditioned_kernels_give_finite_predictions(alice: Client) -> None:
    """Duplicated training inputs and no regularization: the kernel is singular, and the
    solve escalates (reported), never NaN."""
    x = np.concatenate([X_TRAIN[:10]] * 3)
    y = RNG.standard_normal((30, 2))
    model = alice.fit(ARCH, x, y, "nngp", diag_reg=0.0)
    assert model.info.solves["nngp"].method in ("cholesky+jitter", "eigh-clipped")
    for t in (None, 1.0):
        mean, cov = model.predict(X_TEST, t, covariance="marginal")
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))


def test_bad_requests_name_their_field(
    alice: Client, ntk_model: Any, models_server: ServerProcess
) -> None:
    with pytest.raises(errors.InvalidArgumentError) as seen:
        alice.fit(ARCH, X_TRAIN, Y_TRAIN[:20])
    assert seen.value.field_violations[0][0] == "header.y_train_shape"
    with pytest.raises(errors.InvalidArgumentError) as seen:
        ntk_model.predict(X_TEST[:, :4])
    assert seen.value.field_violations[0][0] == "x_test.shape"
    with pytest.raises(errors.InvalidArgumentError) as seen:
        ntk_model.predict(X_TEST.astype(np.float32))
    assert seen.value.field_violations[0][0] == "x_test.dtype"
    with pytest.raises(ValueError, match=r"^t: times must be >= 0"):
        ntk_model.predict(X_TEST, -1.0)
    with pytest.raises(ValueError, match=r"^covariance: must be one of"):
        ntk_model.predict(X_TEST, covariance="diagonal")
    nngp_model = alice.fit(ARCH, X_TRAIN, Y_TRAIN, "nngp", 0.1)
    with pytest.raises(errors.InvalidArgumentError, match="needs a model fitted with get NTK"):
        nngp_model.predict(X_TEST, get="ntk")
    with pytest.raises(errors.InvalidArgumentError, match="NTKGP is a posterior at t = infinity"):
        ntk_model.predict(X_TEST, 1.0, "ntkgp")
    with pytest.raises(errors.NotFoundError, match="no model"):
        alice.model("model-" + "0" * 32)
    with pytest.raises(errors.InvalidArgumentError) as seen:
        alice.model("not-a-model")
    assert seen.value.field_violations[0][0] == "model_id"
    # On the wire: a negative time names its entry.
    with grpc.insecure_channel(models_server.target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = ms.PredictRequest(model_id=ntk_model.id, t=[1.0, -2.0])
        with pytest.raises(grpc.RpcError) as raw:
            stub.Predict(request, metadata=(("authorization", f"Bearer {ALICE}"),), timeout=60)
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "t[1]: must be >= 0" in raw.value.details()


def test_networks_a_model_cannot_be_made_of_are_refused(alice: Client) -> None:
    """A kernel that keeps positions (no readout), and Aggregate layers (per-example graphs),
    are refused before any data is sent, naming the header's architecture."""
    images = RNG.standard_normal((4, 3, 3, 2))
    for arch, problem in (
        (stax.serial(stax.Conv(4, (2, 2)), stax.Relu()), "kernel keeps positions"),
        (stax.serial(stax.Aggregate(), stax.GlobalAvgPool(), stax.Dense(1)), "Aggregate"),
    ):
        with pytest.raises(errors.InvalidArgumentError, match=problem) as seen:
            alice.fit(arch, images if "positions" in problem else images[:, :, 0], np.ones(4))
        assert seen.value.field_violations[0][0] == "header.architecture_id"


def test_a_kernel_that_cannot_be_factorized_is_a_failed_precondition(alice: Client) -> None:
    """No bias, all-zero inputs: the kernel is zero, with no positive eigenvalue."""
    zero = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    with pytest.raises(errors.FailedPreconditionError, match="no positive eigenvalue"):
        alice.fit(zero, np.zeros((6, 3)), np.ones(6), "nngp")


def test_a_model_survives_restarts_sigkill_too(start_server: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    with Client(server.target, timeout=120) as c:
        model = c.fit(ARCH, X_TRAIN, Y_TRAIN, "ntk", DIAG_REG, learning_rate=ETA)
        before = model.predict(X_TEST, [1.0, 2.0], covariance="marginal")
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(60)
    again = start_server(data, "--max-model-mb=1")
    with Client(again.target, timeout=120) as c:
        found = c.model(model.id)
        assert found.info == model.info
        after = found.predict(X_TEST, [1.0, 2.0], covariance="marginal")
        # The budget: 300 rows would take 300^2 x 8 bytes x 3 (two kernels and a factor).
        big = RNG.standard_normal((300, 5))
        with pytest.raises(errors.ResourceExhaustedError, match=r"--max-model-mb"):
            c.fit(ARCH, big, big[:, :1], "ntk")
    np.testing.assert_array_equal(after.mean, before.mean)
    np.testing.assert_array_equal(after.covariance, before.covariance)


@pytest.mark.parametrize("arch, shape", DIGITS_CASES)
def test_digits_are_classified_through_the_server(
    alice: Client, arch: stax.Architecture, shape: tuple[int, ...]
) -> None:
    """One model per network (NTK, keeping the NNGP): both posteriors classify the 597
    held-out digits at >= 98 %."""
    data = digits(shape)
    model = alice.fit(arch, data.x_train, data.y_train, "ntk", diag_reg=1e-4)
    for get in ("nngp", "ntk"):
        accuracy = data.accuracy(model.predict(data.x_test, get=get))
        print(f"{get}: {accuracy:.4f}")
        assert accuracy >= MIN_ACCURACY, (get, accuracy)
