"""mask_constant over the wire: unary, batched, value-and-grad and streamed calls agree with
the engine, NaN padding is accepted only as the mask constant, and the server stays up."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve_engine.kernels import kernel_fn

from tests.conftest import ServerProcess

jax.config.update("jax_enable_x64", True)

ARCH = stax.serial(
    stax.Conv(16, (2,), padding="SAME", b_std=0.2),
    stax.Relu(),
    stax.Conv(16, (1,), b_std=0.1),
    stax.LayerNorm(axis=(-2, -1)),
    stax.Erf(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)
GET = ("nngp", "ntk")


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.target, timeout=120) as c:
        yield c


def _sequences(value: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(5, 7, 3), rng.randn(3, 7, 3)
    x1[1, 4:] = value
    x1[3, 2:] = value
    x2[0, 5:] = value
    return x1, x2


@pytest.mark.parametrize("value", [-9.0, float("nan")])
def test_masked_kernels_agree_with_the_engine_on_every_path(client: Client, value: float) -> None:
    x1, x2 = _sequences(value)
    engine = kernel_fn(ARCH)
    for b in (None, x2):
        want = engine(x1, b, get=GET, mask_constant=value)
        unary = client.kernel(ARCH, x1, b, get=GET, mask_constant=value)
        streamed = client.kernel(ARCH, x1, b, get=GET, mask_constant=value, tile=2)
        (batched,) = client.kernel_batch(ARCH, [(x1, b)], get=GET, mask_constant=value)
        (values, (g1, g2)) = client.value_and_grad(ARCH, x1, b, get=GET, mask_constant=value)
        for w, u, s, t, v in zip(want, unary, streamed, batched, values, strict=True):
            np.testing.assert_allclose(u, w, rtol=1e-12)
            np.testing.assert_allclose(s, w, rtol=1e-12)
            np.testing.assert_array_equal(t, u)
            np.testing.assert_array_equal(v, u)
        assert np.all(np.isfinite(g1))
        np.testing.assert_array_equal(g1[1, 4:], 0)  # masked entries get no gradient
        assert (g2 is None) == (b is None)
    # The mask matters: without it the padding is data.
    unmasked = client.kernel(ARCH, np.where(np.isnan(x1), -9.0, x1), get="nngp")
    assert not np.allclose(unmasked, engine(x1, get="nngp", mask_constant=value))


def test_nan_is_refused_unless_it_is_the_mask_constant(client: Client) -> None:
    x1, _ = _sequences(float("nan"))
    with pytest.raises(errors.InvalidArgumentError, match=r"x1: holds 24 NaN or Inf values"):
        client.kernel(ARCH, x1, get="nngp")
    with pytest.raises(errors.InvalidArgumentError, match=r"other than the mask constant"):
        client.kernel(ARCH, x1, get="nngp", mask_constant=-9.0)
    with pytest.raises(errors.InvalidArgumentError, match=r"x1: holds 24 NaN"):
        client.kernel(ARCH, x1, get="nngp", tile=2)
    # The server is still up and serves the masked call.
    assert np.all(np.isfinite(client.kernel(ARCH, x1, get="nngp", mask_constant=np.nan)))
