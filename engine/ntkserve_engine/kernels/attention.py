"""GlobalSelfAttention: multi-head dot-product self-attention over every position.

Hron, Bahri, Sohl-Dickstein and Novak 2020, "Infinite attention: NNGP and NTK for deep
attention networks" (arXiv:2006.10540), with neural-tangents' semantics (its
`stax.GlobalSelfAttention`): every position of (N, *S, C) inputs is a token, and the
finite network is, per head h, with weights ~ N(0, 1) and K_h = x W_K^h / sqrt(C),
    f = b_std b + W_out_std W_value_std / sqrt(H n_val C_val)
          concat_h[ phi(W_query_std W_key_std Q_h K_h^T / scale) x_val W_V^h ] W_out
where scale = n_key with Q_h = K_h (tied weights, `linear_scaling`) or sqrt(n_key) with
independent query weights. With Σ the covariance over token pairs (k, l) of the keys'
inputs, Σ_val that of the values' inputs, qk = W_query_std W_key_std and
ov = W_out_std W_value_std, the limits (heads, key, value and input channels to infinity):

linear scaling: the dot products concentrate, G_i = phi(qk Σ_ii) (softmax over keys) is
deterministic per example, and the weights of keys and queries drop out of the NTK:
    nngp' = ov^2 G_1 Σ_val,12 G_2^T + b^2
    ntk'  = ov^2 G_1 (Θ_val,12 + 2 Σ_val,12) G_2^T + b^2      (value and output weights)
1/sqrt(n_key) scaling, phi = identity: the dot products are Gaussian, and with
<A, B> = Σ_kl A_kl B_kl over all token pairs,
    nngp' = (qk ov)^2 <Σ_12, Σ_val,12> Σ_12 + b^2
    ntk'  = (qk ov)^2 [ (<Σ_12, Θ_val,12> + <Σ_val,12, Θ_12>) Σ_12
                        + <Σ_12, Σ_val,12> (Θ_12 + 4 Σ_12) ] + b^2
(query, key and value inputs; 4 for the query, key, value and output weights). Other
mechanisms with 1/sqrt(n_key) have no known closed form and are refused at registration.

Positional embeddings are trained parameters shared by all examples, independent per
position with variance W_pos_emb_std^2 (neural-tangents' default; its decay functions are
Python callables and do not travel). SUM adds them to the inputs, CONCAT appends P channels
to C (weighted by the share of channels, as the NTK parameterization divides by C + P):
    Σ = w_x K + w_e I,  Θ_e = w_x Θ + w_e I,   (w_x, w_e) = (1, W_pos^2) for SUM,
    (C / (C + P), W_pos^2 P / (C + P)) for CONCAT,
for the keys and queries, and for the values too when `val_pos_emb`.

Every pair of positions is needed (position pairs), and the positions stay.
Masked positions (`mask_constant`) are absent, as in neural-tangents: a masked key gets no
weight (softmax's logit -1e20; the other mechanisms see a logit of 0), a masked position has
no embedding, and the remask after every layer (masking.py) zeroes what involves it.
Nothing here divides or takes a square root: gradients are finite at all-zero inputs
(softmax of equal logits is uniform) and the forward values are unguarded.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array, lax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial, Violations, finite

_HIGHEST = lax.Precision.HIGHEST
_STDS = ("w_key_std", "w_value_std", "w_query_std", "w_out_std", "w_pos_emb_std", "b_std")


def _tokens(a: Array | None, batch: int, tokens: int) -> Array | None:
    """(batch..., *S, *S) -> (batch..., T, T): every position is one token."""
    return None if a is None else a.reshape((*a.shape[:batch], tokens, tokens))


def _batch_diagonal(nngp: Array) -> Array:
    """(N, N, T, T) -> (N, T, T): each example with itself (cov1 when x2 is x1)."""
    n = nngp.shape[0]
    return nngp[jnp.arange(n), jnp.arange(n)]


def _pairwise(a: Array, b: Array) -> Array:
    """<a, b> over the token pairs, with trailing axes kept for broadcasting."""
    return jnp.sum(a * b, axis=(-2, -1), keepdims=True)


def _weigh(g1: Array, m: Array, g2: Array, batch: int) -> Array:
    """G_1 m G_2^T per pair of examples (batch 2) or per example (batch 1)."""
    spec = "nqk,nmkl,mpl->nmqp" if batch == 2 else "nqk,nkl,npl->nqp"
    return jnp.einsum(spec, g1, m, g2, precision=_HIGHEST)


def _mechanism(kind: int, logits: Array, keep: Array | None) -> Array:
    """phi of (N, queries, keys) logits; masked keys (keep 0) get no weight: softmax's
    logit there is neural-tangents' -1e20 (finite: a row of masked keys stays finite), the
    other mechanisms' logit there is already 0 (the covariances were remasked)."""
    if kind == pb.ATTENTION_MECHANISM_SOFTMAX:
        if keep is not None:
            logits = jnp.where(keep[:, None, :] > 0, logits, -1e20)
        return jax.nn.softmax(logits, axis=-1)  # over the keys
    if kind == pb.ATTENTION_MECHANISM_ABS:
        return jnp.abs(logits)
    if kind == pb.ATTENTION_MECHANISM_RELU:
        return jnp.maximum(logits, 0)
    return logits


def attention_rule(layer: pb.GlobalSelfAttention) -> Rule:
    embedding = layer.pos_emb_type
    embedded = embedding != pb.POSITIONAL_EMBEDDING_NONE
    val_embedded = embedded and layer.val_pos_emb
    has_bias = layer.HasField("b_std")

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        tokens = math.prod(k.spatial)
        nngp = _tokens(k.nngp, 2, tokens)
        ntk = _tokens(k.ntk, 2, tokens)
        cov1 = _tokens(k.cov1, 1, tokens)
        cov2 = _tokens(k.cov2, 1, tokens)
        assert nngp is not None
        self1 = _batch_diagonal(nngp) if cov1 is None else cov1
        self2 = self1 if cov2 is None else cov2

        input_share, embedding_share = 1.0, 1.0
        if embedding == pb.POSITIONAL_EMBEDDING_CONCAT:
            pos_channels = layer.n_chan_pos_emb if layer.HasField("n_chan_pos_emb") else k.width
            input_share = k.width / (k.width + pos_channels)
            embedding_share = pos_channels / (k.width + pos_channels)
        eye = jnp.eye(tokens, dtype=nngp.dtype)
        keep1 = None if k.keep1 is None else k.keep1.reshape(-1, tokens)
        keep2 = keep1 if k.keep2 is None else k.keep2.reshape(-1, tokens)
        # the embeddings' covariance in each block; masked positions have none
        eye1 = eye if keep1 is None else eye * keep1[:, :, None] * keep1[:, None, :]
        eye2 = eye if keep2 is None else eye * keep2[:, :, None] * keep2[:, None, :]
        eye12 = eye
        if keep1 is not None and keep2 is not None:
            eye12 = eye * keep1[:, None, :, None] * keep2[None, :, None, :]

        def keyed(m: Array, eye: Array) -> Array:
            """The covariance of the keys' (and queries') inputs: with the embeddings."""
            if not embedded:
                return m
            return input_share * m + (hp["w_pos_emb_std"] ** 2 * embedding_share) * eye

        def valued(m: Array, keyed_m: Array) -> Array:
            return keyed_m if val_embedded else m

        b2 = hp["b_std"] ** 2 if has_bias else None

        def plus_bias(m: Array) -> Array:
            return m if b2 is None else m + b2

        qk = hp["w_query_std"] * hp["w_key_std"]
        ov2 = (hp["w_out_std"] * hp["w_value_std"]) ** 2
        keyed1, keyed2, keyed12 = keyed(self1, eye1), keyed(self2, eye2), keyed(nngp, eye12)

        if layer.linear_scaling:
            g1 = _mechanism(layer.attention_mechanism, qk * keyed1, keep1)
            g2 = g1 if cov2 is None else _mechanism(layer.attention_mechanism, qk * keyed2, keep2)
            values12 = _weigh(g1, valued(nngp, keyed12), g2, 2)
            new_nngp = plus_bias(ov2 * values12)
            new_cov1 = (
                None if cov1 is None else plus_bias(ov2 * _weigh(g1, valued(cov1, keyed1), g1, 1))
            )
            new_cov2 = (
                None if cov2 is None else plus_bias(ov2 * _weigh(g2, valued(cov2, keyed2), g2, 1))
            )
            new_ntk = None
            if ntk is not None:
                ntk_values = valued(ntk, keyed(ntk, eye12))
                new_ntk = plus_bias(ov2 * (_weigh(g1, ntk_values, g2, 2) + 2 * values12))
        else:  # IDENTITY, checked at registration
            std2 = qk**2 * ov2

            def identity_nngp(keyed_m: Array, m: Array) -> tuple[Array, Array]:
                dot = _pairwise(keyed_m, valued(m, keyed_m))
                return dot, plus_bias(std2 * (dot * keyed_m))

            dot12, new_nngp = identity_nngp(keyed12, nngp)
            new_cov1 = None if cov1 is None else identity_nngp(keyed(cov1, eye1), cov1)[1]
            new_cov2 = None if cov2 is None else identity_nngp(keyed(cov2, eye2), cov2)[1]
            new_ntk = None
            if ntk is not None:
                keyed_ntk = keyed(ntk, eye12)
                if val_embedded or not embedded:
                    inputs = 2 * _pairwise(keyed12, keyed_ntk)
                else:
                    inputs = _pairwise(keyed12, ntk) + _pairwise(nngp, keyed_ntk)
                new_ntk = plus_bias(std2 * (inputs * keyed12 + dot12 * (keyed_ntk + 4 * keyed12)))

        return k.replace(
            nngp=_restore(new_nngp, 2, k.spatial),
            cov1=_restore(new_cov1, 1, k.spatial),
            cov2=_restore(new_cov2, 1, k.spatial),
            ntk=_restore(new_ntk, 2, k.spatial),
            width=layer.n_chan_out,
            is_gaussian=True,
        )

    return rule


def _restore(a: Array | None, batch: int, spatial: Spatial) -> Array | None:
    """(batch..., T, T) -> the Kernel's layout: (batch..., *S, *S), or (batch...) without S."""
    if a is None:
        return None
    return a.reshape(a.shape[:batch] + spatial + spatial)


def check_attention(layer: pb.GlobalSelfAttention) -> Violations:
    out = finite(layer, *_STDS, nonnegative=True)
    for name in ("n_chan_out", "n_chan_key", "n_chan_val", "n_heads"):
        if getattr(layer, name) < 1:
            out.append((name, "is required and must be >= 1"))
    if layer.attention_mechanism not in pb.AttentionMechanism.values():
        out.append(("attention_mechanism", f"unknown value {layer.attention_mechanism}"))
    if layer.pos_emb_type not in pb.PositionalEmbedding.values():
        out.append(("pos_emb_type", f"unknown value {layer.pos_emb_type}"))
    # checks run before `canonical` makes the zero value (SOFTMAX) explicit
    mechanism = layer.attention_mechanism or pb.ATTENTION_MECHANISM_SOFTMAX
    if not layer.linear_scaling and mechanism != pb.ATTENTION_MECHANISM_IDENTITY:
        name = pb.AttentionMechanism.Name(mechanism).removeprefix("ATTENTION_MECHANISM_")
        out.append(
            (
                "linear_scaling",
                f"false (dot products scaled by 1/sqrt(n_chan_key)) has a closed-form kernel "
                f"only with attention_mechanism IDENTITY, got {name}: the limit of "
                "this mechanism of Gaussian dot products has no known closed form "
                "(Hron et al. 2020; neural-tangents refuses it too). Use "
                "linear_scaling=true (1/n_chan_key, tied key and query weights)",
            )
        )
    if layer.HasField("n_chan_pos_emb"):
        if layer.pos_emb_type != pb.POSITIONAL_EMBEDDING_CONCAT:
            out.append(
                (
                    "n_chan_pos_emb",
                    "is used only with pos_emb_type CONCAT (SUM embeddings have the "
                    "inputs' channels): leave it unset",
                )
            )
        elif layer.n_chan_pos_emb < 1:
            out.append(("n_chan_pos_emb", f"must be >= 1, got {layer.n_chan_pos_emb}"))
    return out


def canonical_attention(layer: pb.GlobalSelfAttention) -> None:
    """The enums' zero values mean neural-tangents' defaults: make them explicit."""
    if layer.attention_mechanism == pb.ATTENTION_MECHANISM_UNSPECIFIED:
        layer.attention_mechanism = pb.ATTENTION_MECHANISM_SOFTMAX
    if layer.pos_emb_type == pb.POSITIONAL_EMBEDDING_UNSPECIFIED:
        layer.pos_emb_type = pb.POSITIONAL_EMBEDDING_NONE


GLOBAL_SELF_ATTENTION = LayerRow(
    message=pb.GlobalSelfAttention,
    role=Role.AFFINE,
    build=attention_rule,
    defaults={
        "linear_scaling": True,
        "w_key_std": 1.0,
        "w_value_std": 1.0,
        "w_query_std": 1.0,
        "w_out_std": 1.0,
        "w_pos_emb_std": 1.0,
    },
    hyper=_STDS,
    check=check_attention,
    canonical=canonical_attention,
    needs_position_pairs=True,
)
