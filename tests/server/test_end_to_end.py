"""A real server on loopback, driven by the real client, against the in-process engine."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve_engine.kernels import kernel_fn

from tests.conftest import ServerProcess

jax.config.update("jax_enable_x64", True)

ARCH = stax.serial(
    stax.Dense(512, W_std=1.5, b_std=0.05),
    stax.Relu(),
    stax.Dense(512, W_std=1.5, b_std=0.05),
    stax.Relu(),
    stax.Dense(1, W_std=1.5, b_std=0.05),
)


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.target, timeout=60) as c:
        yield c


def _inputs(dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.randn(6, 10).astype(dtype), rng.randn(4, 10).astype(dtype)


def test_kernel_matches_the_engine(client: Client) -> None:
    x1, x2 = _inputs()
    nngp, ntk = client.kernel(ARCH, x1, x2, get=("nngp", "ntk"))
    ref_nngp, ref_ntk = kernel_fn(ARCH)(x1, x2, get=("nngp", "ntk"))
    assert nngp.dtype == np.float64 and nngp.shape == (6, 4)
    np.testing.assert_allclose(nngp, ref_nngp, rtol=1e-12)
    np.testing.assert_allclose(ntk, ref_ntk, rtol=1e-12)
    # Order follows `get`; a single name returns a single array.
    ntk2, nngp2 = client.kernel(ARCH, x1, x2, get=("ntk", "nngp"))
    np.testing.assert_array_equal(ntk2, ntk)
    np.testing.assert_array_equal(nngp2, nngp)
    np.testing.assert_array_equal(client.kernel(ARCH, x1, x2, get="nngp"), nngp)


def test_float32_in_float32_out(client: Client) -> None:
    x1, _ = _inputs(np.float32)
    k = client.kernel(ARCH, x1)
    assert k.dtype == np.float32 and k.shape == (6, 6)
    np.testing.assert_allclose(k, kernel_fn(ARCH)(x1.astype(np.float64)), rtol=1e-5)


@pytest.mark.parametrize("with_x2", [False, True])
def test_value_and_grad_values_equal_kernel_exactly(client: Client, with_x2: bool) -> None:
    x1, x2 = _inputs()
    x2 = x2 if with_x2 else None
    n2 = 4 if with_x2 else 6
    cotangent = (np.random.RandomState(1).randn(6, n2), np.random.RandomState(2).randn(6, n2))
    (nngp, ntk), (g1, g2) = client.value_and_grad(
        ARCH, x1, x2, get=("nngp", "ntk"), cotangent=cotangent
    )
    plain_nngp, plain_ntk = client.kernel(ARCH, x1, x2, get=("nngp", "ntk"))
    np.testing.assert_array_equal(nngp, plain_nngp)
    np.testing.assert_array_equal(ntk, plain_ntk)
    kfn = kernel_fn(ARCH)
    args = (x1,) if x2 is None else (x1, x2)
    _, vjp = jax.vjp(lambda *a: kfn(a[0], a[1] if len(a) > 1 else None, get=("nngp", "ntk")), *args)
    expected = vjp(cotangent)
    np.testing.assert_allclose(g1, expected[0], rtol=1e-10)
    if with_x2:
        np.testing.assert_allclose(g2, expected[1], rtol=1e-10)
    else:
        assert g2 is None


def test_value_and_grad_default_cotangent_is_ones_and_zero_inputs_are_finite(
    client: Client,
) -> None:
    x = np.zeros((3, 5))
    k, (g1, g2) = client.value_and_grad(ARCH, x)
    np.testing.assert_array_equal(k, client.kernel(ARCH, x))
    assert np.all(np.isfinite(g1)) and g2 is None
    x1, _ = _inputs()
    _, (g_default, _) = client.value_and_grad(ARCH, x1)
    _, (g_ones, _) = client.value_and_grad(ARCH, x1, cotangent=np.ones((6, 6)))
    np.testing.assert_array_equal(g_default, g_ones)


def test_registry_round_trip(client: Client) -> None:
    arch = stax.serial(
        stax.Dense(7, b_std=0.0, parameterization="standard"), stax.Erf(), stax.Dense(1)
    )
    first = client.register(arch)
    assert client.register(arch) == first  # same network, same id
    info = client.get_architecture(first)
    assert info.id == first and info.create_time > 0
    assert info.architecture.layers[1].erf.a == 1.0  # stored canonical: defaults filled in
    assert first in {i.id for i in client.list_architectures()}
    client.delete_architecture(first)
    assert first not in {i.id for i in client.list_architectures()}
    with pytest.raises(errors.NotFoundError, match=first):
        client.kernel(first, np.ones((2, 3)))
    with pytest.raises(errors.NotFoundError):
        client.delete_architecture(first)


def test_spec_is_registered_again_after_the_server_lost_it(client: Client) -> None:
    arch = stax.serial(stax.Dense(5), stax.Abs(), stax.Dense(1))
    x = np.ones((2, 3))
    before = client.kernel(arch, x)
    client.delete_architecture(client.register(arch))
    np.testing.assert_array_equal(client.kernel(arch, x), before)


def test_readme_example(client: Client) -> None:
    arch = stax.serial(
        stax.Dense(512, W_std=1.5, b_std=0.05),
        stax.Relu(),
        stax.Dense(512, W_std=1.5, b_std=0.05),
        stax.Relu(),
        stax.Dense(1),
    )
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    ntk = client.kernel(arch, x, get="ntk")
    assert ntk.shape == (4, 4) and np.all(np.isfinite(ntk))


def test_every_call_is_logged(client: Client, server: ServerProcess) -> None:
    client.kernel(ARCH, np.ones((2, 10)))
    import time

    for _ in range(50):
        if "rpc method=ComputeKernel code=OK" in server.log_text():
            break
        time.sleep(0.1)
    line = next(
        x for x in server.log_text().splitlines() if "rpc method=ComputeKernel code=OK" in x
    )
    assert " ms=" in line and " bytes_in=" in line and " bytes_out=" in line


def test_convolutional_and_residual_networks_over_the_wire(client: Client) -> None:
    block = stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Relu(), stax.Conv(8, (3, 3), padding="SAME")), stax.Identity()
        ),
        stax.FanInSum(),
    )
    arch = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
        block,
        stax.Relu(),
        stax.AvgPool((2, 2)),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    rng = np.random.RandomState(3)
    x1, x2 = rng.randn(3, 6, 5, 2), rng.randn(2, 6, 5, 2)
    got = client.kernel(arch, x1, x2, get=("nngp", "ntk"))
    want = kernel_fn(arch)(x1, x2, get=("nngp", "ntk"))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    (value, (g1, g2)) = client.value_and_grad(arch, x1, x2, get="ntk")
    np.testing.assert_array_equal(value, got[1])
    assert g1.shape == x1.shape and g2.shape == x2.shape and np.all(np.isfinite(g1))


def test_hyper_parameter_gradients_over_the_wire(client: Client) -> None:
    arch = stax.serial(
        stax.Dense(16, W_std=1.3, b_std=0.2), stax.Gelu(), stax.Dense(1), stax.Sin(0.9, 1.1, 0.2)
    )
    x1, x2 = _inputs()
    cotangent = np.random.RandomState(8).randn(6, 4)
    kfn = kernel_fn(arch)

    def loss(params):  # type: ignore[no-untyped-def]
        return jax.numpy.sum(cotangent * kfn(x1, x2, get="ntk", params=params))

    expected = dict(
        zip(kfn.hyper_parameter_paths, jax.tree.leaves(jax.grad(loss)(kfn.params)), strict=True)
    )
    assert "architecture.layers[0].dense.w_std" in expected
    assert "architecture.layers[3].sin.c" in expected
    value, (_, _, by_path) = client.value_and_grad(
        arch, x1, x2, get="ntk", cotangent=cotangent, hyper_parameters=["*"]
    )
    assert set(by_path) == set(expected)
    for name, grad in expected.items():
        np.testing.assert_allclose(by_path[name], float(grad), rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(value, client.kernel(arch, x1, x2, get="ntk"))
    _, (_, _, one) = client.value_and_grad(
        arch, x1, x2, hyper_parameters=["architecture.layers[3].sin.a"]
    )
    assert list(one) == ["architecture.layers[3].sin.a"]
    _, plain = client.value_and_grad(arch, x1, x2)
    assert len(plain) == 2  # without hyper_parameters the result keeps its two-gradient shape


def test_architectures_differing_only_in_hyper_parameters_share_one_compilation() -> None:
    from ntkserve_server.compute import ComputeEngine, check

    engine = ComputeEngine()
    x = np.random.RandomState(9).randn(5, 3)
    traces = []
    first = None
    for w_std in (0.5, 1.0, 1.5, 2.0):
        arch = stax.serial(stax.Dense(8, W_std=w_std, b_std=0.1), stax.Relu(), stax.Dense(1))
        kfn = kernel_fn(arch)
        if first is None:  # count the traces of the program the engine makes from this one
            apply = kfn.apply
            kfn.apply = lambda *a, apply=apply, **k: traces.append(1) or apply(*a, **k)  # type: ignore[method-assign]
        compiled = engine.compiled(kfn)
        first = first or compiled.forward
        assert compiled.forward is first
        values = engine.kernel(check(compiled, x, None, ("ntk",)))
        own = kernel_fn(arch)  # its own program gives the same bits as the shared one
        alone = jax.jit(own.apply, static_argnames=("get",))(own.params, x, None, get=("ntk",))
        np.testing.assert_array_equal(values[0], own.to_host(alone, True)[0])
    assert len(traces) == 1  # one compilation for the whole sweep
    # b_std absent is another network (no bias), so another program.
    no_bias = engine.compiled(kernel_fn(stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))))
    assert no_bias.forward is not first


def test_the_compiled_programs_are_bounded_least_recently_used_first() -> None:
    from ntkserve_server.compute import ComputeEngine, check

    engine = ComputeEngine(max_topologies=2)
    x = np.random.RandomState(3).randn(4, 3)
    nets = [stax.serial(stax.Dense(8), act(), stax.Dense(1)) for act in (stax.Relu, stax.Erf)]
    nets.append(stax.serial(stax.Dense(8), stax.Gelu(), stax.Dense(1)))
    first, second, third = (kernel_fn(n) for n in nets)
    engine.compiled(first)
    engine.compiled(second)
    assert engine.lookup(first.id) is not None  # now the most recently used
    engine.compiled(third)
    assert engine.topologies() == 2
    assert engine.lookup(second.id) is None  # dropped: the least recently used
    assert engine.lookup(first.id) is not None and engine.lookup(third.id) is not None
    again = engine.compiled(kernel_fn(nets[1]))  # rebuilt on its next use, same values
    fresh = ComputeEngine()
    np.testing.assert_array_equal(
        engine.kernel(check(again, x, None, ("ntk",)))[0],
        fresh.kernel(check(fresh.compiled(kernel_fn(nets[1])), x, None, ("ntk",)))[0],
    )


def test_concurrent_small_calls_are_batched_and_equal_lone_calls(
    client: Client, server: ServerProcess
) -> None:
    rng = np.random.default_rng(7)
    xs = [(rng.standard_normal((5, 10)), rng.standard_normal((3, 10))) for _ in range(24)]
    alone = [client.kernel(ARCH, a, b, get=("nngp", "ntk")) for a, b in xs]
    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(lambda ab: client.kernel(ARCH, *ab, get=("nngp", "ntk")), xs))
    for one, other in zip(alone, together, strict=True):
        for k1, k2 in zip(one, other, strict=True):
            np.testing.assert_allclose(k2, k1, rtol=1e-13, atol=0)


def test_compute_kernel_batch_answers_each_request_in_order(client: Client) -> None:
    rng = np.random.default_rng(8)
    items = [
        (rng.standard_normal((n, 10)), None if n % 2 else rng.standard_normal((2, 10)))
        for n in (3, 4, 3, 6, 4)
    ]
    answers = client.kernel_batch(ARCH, items, get=("nngp", "ntk"))
    assert len(answers) == len(items)
    for (a, b), answer in zip(items, answers, strict=True):
        for got, want in zip(answer, client.kernel(ARCH, a, b, get=("nngp", "ntk")), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
