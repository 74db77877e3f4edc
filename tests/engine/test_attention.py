"""GlobalSelfAttention beyond Monte Carlo: gradients, registration checks, token layout.

- input and hyper-parameter gradients match central differences in float64;
- the vector-Jacobian product's primal is exactly the plain kernel (no forward guards);
- combinations without a closed form are refused at registration, naming the field;
- every position is a token: (N, H, W, C) inputs give the kernel of (N, H * W, C) ones.
- masked positions (`mask_constant`) are absent: padding with them changes nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ntkserve import stax
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_engine.kernels import ArchitectureError, kernel_fn

from tests.engine.gradient_helpers import assert_hyper_gradients_match, central_difference


def _network(**attention: object) -> stax.Architecture:
    return stax.serial(
        stax.Dense(6, W_std=1.3, b_std=0.2),
        stax.GlobalSelfAttention(5, 4, 4, 2, W_key_std=1.4, **attention),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, b_std=0.1),
    )


SMALL = [
    pytest.param(_network(), id="softmax"),
    pytest.param(_network(attention_mechanism="ABS", b_std=0.3), id="abs-bias"),
    pytest.param(
        _network(attention_mechanism="RELU", pos_emb_type="CONCAT", n_chan_pos_emb=3),
        id="relu-concat",
    ),
    pytest.param(
        _network(pos_emb_type="SUM", val_pos_emb=True, W_pos_emb_std=0.6), id="softmax-sum-val"
    ),
    pytest.param(
        _network(linear_scaling=False, attention_mechanism="IDENTITY", pos_emb_type="SUM"),
        id="identity-sqrt-sum",
    ),
    pytest.param(
        _network(
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            pos_emb_type="CONCAT",
            val_pos_emb=True,
            b_std=0.1,
        ),
        id="identity-sqrt-concat-val",
    ),
]


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, 3, 2)


def _loss(kfn, x2=None):  # type: ignore[no-untyped-def]
    """Σ C ⊙ K over the NNGP and the NTK, each with its own random cotangent C."""

    def loss(x1, x2=x2):  # type: ignore[no-untyped-def]
        rng = np.random.RandomState(7)
        out = kfn(x1, x2, get=("nngp", "ntk"))
        return sum(jnp.sum(jnp.asarray(rng.randn(*k.shape)) * k) for k in out)

    return loss


@pytest.mark.parametrize("arch", SMALL)
def test_input_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    """Central differences with step 1e-6 in float64 are good to ~1e-9 relative on a
    smooth kernel; 1e-5 leaves room for the Relu after the attention (smooth here:
    its inputs' correlations stay away from +-1)."""
    kfn = kernel_fn(arch)
    x1, x2 = _inputs(3, 0), _inputs(2, 1)
    for other in (None, x2):
        loss = _loss(kfn, other)
        np.testing.assert_allclose(
            np.asarray(jax.jit(jax.grad(loss))(x1)),
            central_difference(loss, x1),
            rtol=1e-5,
            atol=1e-7,
        )


@pytest.mark.parametrize("arch", SMALL)
def test_hyper_parameter_gradients_match_finite_differences(arch: stax.Architecture) -> None:
    kfn = kernel_fn(arch)
    x1, x2 = _inputs(3, 2), _inputs(2, 3)

    @jax.jit
    def loss(params):  # type: ignore[no-untyped-def]
        return jnp.sum(kfn(x1, x2, get="ntk", params=params))

    assert_hyper_gradients_match(loss, kfn.params)


@pytest.mark.parametrize("arch", SMALL)
def test_values_with_gradients_are_the_plain_values(arch: stax.Architecture) -> None:
    """All-zero inputs: gradients finite, values those of the direct call (to rounding:
    another program; bit for bit eagerly, which test_safe_math.py and test_gradients.py
    check where a value could change under a vjp)."""
    kfn = kernel_fn(arch)
    x = np.zeros((3, 3, 2))
    for x2 in (None, _inputs(2, 4)):

        def both(a, x2=x2):  # type: ignore[no-untyped-def]
            return sum(jnp.sum(k) for k in kfn(a, x2, get=("nngp", "ntk")))

        value, grad = jax.jit(jax.value_and_grad(both))(x)
        np.testing.assert_allclose(value, both(x), rtol=1e-12)
        assert np.all(np.isfinite(grad))


def _violations(arch: stax.Architecture) -> dict[str, str]:
    with pytest.raises(ArchitectureError) as info:
        kernel_fn(arch)
    return dict(info.value.violations)


@pytest.mark.parametrize("mechanism", ["SOFTMAX", "RELU", "ABS"])
def test_sqrt_scaling_without_closed_form_is_refused(mechanism: str) -> None:
    arch = stax.GlobalSelfAttention(4, 4, 4, 1, linear_scaling=False, attention_mechanism=mechanism)
    found = _violations(arch)
    message = found["architecture.layers[0].global_self_attention.linear_scaling"]
    assert mechanism in message and "IDENTITY" in message and "closed form" in message


def test_the_default_mechanism_with_sqrt_scaling_is_refused_as_softmax() -> None:
    """The enum's zero value is SOFTMAX, so sqrt scaling without a mechanism is refused."""
    layer = pb.GlobalSelfAttention(
        n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=1, linear_scaling=False
    )
    arch = pb.Architecture(layers=[pb.Layer(global_self_attention=layer)])
    message = _violations(arch)["architecture.layers[0].global_self_attention.linear_scaling"]
    assert "SOFTMAX" in message


def test_bad_parameters_name_their_fields() -> None:
    layer = pb.GlobalSelfAttention(
        n_chan_out=4,
        n_chan_key=0,
        n_chan_val=4,
        n_heads=0,
        w_key_std=-1.0,
        b_std=float("nan"),
        pos_emb_type=pb.POSITIONAL_EMBEDDING_SUM,
        n_chan_pos_emb=3,
    )
    found = _violations(pb.Architecture(layers=[pb.Layer(global_self_attention=layer)]))
    here = "architecture.layers[0].global_self_attention"
    assert set(found) == {
        f"{here}.n_chan_key",
        f"{here}.n_heads",
        f"{here}.w_key_std",
        f"{here}.b_std",
        f"{here}.n_chan_pos_emb",
    }


def test_a_decay_function_cannot_travel() -> None:
    with pytest.raises(ValueError, match="pos_emb_decay_fn"):
        stax.GlobalSelfAttention(4, 4, 4, 1, pos_emb_type="SUM", pos_emb_decay_fn=np.exp)


def test_defaults_spelled_out_or_not_give_one_id() -> None:
    bare = pb.GlobalSelfAttention(n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=2)
    spelled = stax.GlobalSelfAttention(4, 4, 4, 2)
    assert kernel_fn(pb.Architecture(layers=[pb.Layer(global_self_attention=bare)])).id == (
        kernel_fn(spelled).id
    )


@pytest.mark.parametrize("pos_emb_type", ["NONE", "SUM"])
def test_every_position_is_a_token(pos_emb_type: str) -> None:
    """(N, 2, 3, C) inputs give the kernel of the same positions as (N, 6, C) tokens."""
    arch = stax.serial(
        stax.Dense(5, b_std=0.1),
        stax.GlobalSelfAttention(4, 4, 4, 2, pos_emb_type=pos_emb_type),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )
    x1 = np.random.RandomState(5).randn(3, 2, 3, 2)
    x2 = np.random.RandomState(6).randn(2, 2, 3, 2)
    kfn = kernel_fn(arch)
    images = kfn(x1, x2, get=("nngp", "ntk"))
    tokens = kfn(x1.reshape(3, 6, 2), x2.reshape(2, 6, 2), get=("nngp", "ntk"))
    for a, b in zip(images, tokens, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_one_token_is_a_dense_layer_with_value_and_output_weights() -> None:
    """With one position softmax weighs it by 1: NNGP ov^2 K + b^2 and NTK
    ov^2 (Θ + 2 K) + b^2 (value and output weights trained; the bias adds b^2)."""
    ov, b = 1.3 * 0.7, 0.2
    arch = stax.GlobalSelfAttention(3, 4, 4, 2, W_out_std=1.3, W_value_std=0.7, b_std=b)
    x = np.random.RandomState(8).randn(4, 1, 5)
    nngp, ntk = kernel_fn(arch)(x, get=("nngp", "ntk"))
    k = x[:, 0] @ x[:, 0].T / 5
    np.testing.assert_allclose(nngp[..., 0, 0], ov**2 * k + b**2, rtol=1e-13)
    np.testing.assert_allclose(ntk[..., 0, 0], ov**2 * 2 * k + b**2, rtol=1e-13)


MASK = -7.0


@pytest.mark.parametrize("arch", SMALL)
def test_masked_positions_are_absent(arch: stax.Architecture) -> None:
    """Padding with masked positions (`mask_constant`) gives the kernel of the unpadded
    inputs, as in neural-tangents: masked keys get no attention weight (softmax's logit
    -1e20, the other mechanisms' 0), masked positions have no embedding, and every entry
    that involves one is 0 after the layer."""
    rng = np.random.RandomState(9)
    x1, x2 = rng.randn(3, 3, 2), rng.randn(2, 3, 2)

    def padded(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, np.full((x.shape[0], 2, x.shape[2]), MASK)], axis=1)

    kfn = kernel_fn(arch)
    for a, b in ((x1, None), (x1, x2)):
        plain = kfn(a, b, get=("nngp", "ntk"))
        masked = kfn(
            padded(a), None if b is None else padded(b), get=("nngp", "ntk"), mask_constant=MASK
        )
        for p, m in zip(plain, masked, strict=True):
            np.testing.assert_allclose(m, p, rtol=1e-12, atol=1e-15)
