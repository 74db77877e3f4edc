"""Aggregate patterns over the wire: unary, value-and-grad and streamed calls agree with the
engine, and missing or misshapen patterns are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve_engine.kernels import kernel_fn

from tests.conftest import ServerProcess

jax.config.update("jax_enable_x64", True)

# Erf, not Relu: two nodes with the same neighbours have correlation 1, where the Relu
# NTK's arccos turns round-off into sqrt(eps) (README, "Rows given twice"), and programs of
# different shapes round differently.
GRAPH = stax.serial(
    stax.Dense(16, W_std=1.2, b_std=0.1),
    stax.Aggregate(),
    stax.Erf(),
    stax.Dense(16, b_std=0.1),
    stax.Aggregate(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)
GET = ("nngp", "ntk")


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.target, timeout=120) as c:
        yield c


def _graphs(n: int, nodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    adjacency = (rng.rand(n, nodes, nodes) < 0.4).astype(np.float64)
    adjacency = np.maximum(adjacency, adjacency.transpose(0, 2, 1)) + np.eye(nodes)
    return rng.randn(n, nodes, 3), adjacency


def test_patterns_agree_with_the_engine_on_every_path(client: Client) -> None:
    x1, p1 = _graphs(5, 6, 0)
    x2, p2 = _graphs(3, 6, 1)
    engine = kernel_fn(GRAPH)
    for b, pattern in ((None, (p1, None)), (x2, (p1, p2))):
        want = engine(x1, b, get=GET, pattern=pattern)
        unary = client.kernel(GRAPH, x1, b, get=GET, pattern=pattern)
        streamed = client.kernel(GRAPH, x1, b, get=GET, pattern=pattern, tile=2)
        values, (g1, _) = client.value_and_grad(GRAPH, x1, b, get=GET, pattern=pattern)
        for w, u, s, v in zip(want, unary, streamed, values, strict=True):
            np.testing.assert_allclose(u, w, rtol=1e-12)
            np.testing.assert_allclose(s, w, rtol=1e-12)
            np.testing.assert_array_equal(v, u)
        assert np.all(np.isfinite(g1))
    # The graphs matter.
    other = client.kernel(GRAPH, x1, get="nngp", pattern=(np.ones_like(p1), None))
    assert not np.allclose(other, engine(x1, get="nngp", pattern=(p1, None)))


def test_missing_or_misshapen_patterns_name_the_field(client: Client) -> None:
    x1, p1 = _graphs(4, 5, 2)
    with pytest.raises(errors.InvalidArgumentError, match=r"pattern1: is required"):
        client.kernel(GRAPH, x1, get="nngp")
    with pytest.raises(errors.InvalidArgumentError, match=r"pattern1.shape: must be"):
        client.kernel(GRAPH, x1, get="nngp", pattern=(p1[:, :4, :4], None))
    with pytest.raises(errors.InvalidArgumentError, match=r"pattern2: is required"):
        client.kernel(GRAPH, x1, x1[:2], get="nngp", pattern=(p1, None))
    with pytest.raises(errors.InvalidArgumentError, match=r"pattern1: given, but"):
        client.kernel(stax.Dense(1), x1, get="nngp", pattern=(p1, None))
    with pytest.raises(errors.InvalidArgumentError, match=r"pattern1: is required"):
        client.kernel(GRAPH, x1, get="nngp", tile=2)
    assert client.kernel(GRAPH, x1, get="nngp", pattern=(p1, None)).shape == (4, 4)
