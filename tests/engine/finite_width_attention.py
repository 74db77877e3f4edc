"""The finite-width GlobalSelfAttention layer, written from its literal definition.

Independent of the engine's rule (which uses the infinite-width formulas): weights drawn
N(0, 1), keys/queries/values as matrix products, the attention mechanism applied to the
scaled dot products, heads concatenated, then the output projection, in neural-tangents'
NTK parameterization. Positional embeddings are parameters (trained, so they enter the
empirical NTK), one row per position shared by all examples.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from ntkserve.v1 import architecture_pb2 as pb

# Embedding rows are drawn for up to this many positions, before the inputs' shape is
# known (a layer's init sees only the input width); the rows past the inputs' positions
# are unused, get zero gradients and leave the empirical NTK unchanged.
MAX_TOKENS = 64


def _std(m: pb.GlobalSelfAttention, name: str) -> float:
    return float(getattr(m, name)) if m.HasField(name) else 1.0


def _mechanism(kind: int, logits: jax.Array) -> jax.Array:
    if kind == pb.ATTENTION_MECHANISM_IDENTITY:
        return logits
    if kind == pb.ATTENTION_MECHANISM_ABS:
        return jnp.abs(logits)
    if kind == pb.ATTENTION_MECHANISM_RELU:
        return jnp.maximum(logits, 0.0)
    exp = jnp.exp(logits - logits.max(-1, keepdims=True))  # softmax over the keys
    return exp / exp.sum(-1, keepdims=True)


def attention_layer(m: pb.GlobalSelfAttention) -> tuple[Any, Any]:
    """(init, apply) of one attention layer, in the convention of tests.engine.finite_width."""
    heads, n_key, n_val, n_out = (
        int(m.n_heads),
        int(m.n_chan_key),
        int(m.n_chan_val),
        int(m.n_chan_out),
    )
    tied = m.linear_scaling if m.HasField("linear_scaling") else True
    qk = _std(m, "w_query_std") * _std(m, "w_key_std")
    ov = _std(m, "w_out_std") * _std(m, "w_value_std")
    pos_std = _std(m, "w_pos_emb_std")
    has_bias = m.HasField("b_std")
    b_std = m.b_std if has_bias else 0.0
    embedding = m.pos_emb_type or pb.POSITIONAL_EMBEDDING_NONE
    mechanism = m.attention_mechanism or pb.ATTENTION_MECHANISM_SOFTMAX

    def init(key: jax.Array, n_in: int) -> tuple[int, Any]:
        n_pos = int(m.n_chan_pos_emb) if m.HasField("n_chan_pos_emb") else n_in
        concat = embedding == pb.POSITIONAL_EMBEDDING_CONCAT
        n_keys_in = n_in + n_pos if concat else n_in
        n_vals_in = n_in + n_pos if concat and m.val_pos_emb else n_in
        kq, kk, kv, ko, kb, kp = jax.random.split(key, 6)
        normal = jax.random.normal
        params = {
            "key": normal(kk, (heads, n_keys_in, n_key)),
            "query": None if tied else normal(kq, (heads, n_keys_in, n_key)),
            "value": normal(kv, (heads, n_vals_in, n_val)),
            "out": normal(ko, (heads * n_val, n_out)),
            "bias": normal(kb, (n_out,)) if has_bias else None,
            "pos": None
            if embedding == pb.POSITIONAL_EMBEDDING_NONE
            else normal(kp, (MAX_TOKENS, n_pos)),
        }
        return n_out, params

    def apply(params: Any, x: jax.Array) -> jax.Array:
        n, spatial, channels = x.shape[0], x.shape[1:-1], x.shape[-1]
        tokens = math.prod(spatial)
        x = x.reshape(n, tokens, channels)  # every position is a token
        keys_in = values_in = x
        if embedding != pb.POSITIONAL_EMBEDDING_NONE:
            pos = pos_std * params["pos"][:tokens]
            if embedding == pb.POSITIONAL_EMBEDDING_SUM:
                keys_in = x + pos
            else:
                keys_in = jnp.concatenate([x, jnp.broadcast_to(pos, (n, *pos.shape))], -1)
            if m.val_pos_emb:
                values_in = keys_in
        keys = jnp.einsum("ntc,hcd->nhtd", keys_in, params["key"])
        queries = keys if tied else jnp.einsum("ntc,hcd->nhtd", keys_in, params["query"])
        scale = keys_in.shape[-1] * (n_key if tied else math.sqrt(n_key))
        logits = qk / scale * jnp.einsum("nhtd,nhsd->nhts", queries, keys)
        values = jnp.einsum("ntc,hcd->nhtd", values_in, params["value"])
        mixed = jnp.einsum("nhts,nhsd->nthd", _mechanism(mechanism, logits), values)
        out = mixed.reshape(n, tokens, heads * n_val) @ params["out"]
        out = ov / math.sqrt(heads * n_val * values_in.shape[-1]) * out
        if has_bias:
            out = out + b_std * params["bias"]
        return out.reshape(n, *spatial, n_out)

    return init, apply
