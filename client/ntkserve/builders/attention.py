"""GlobalSelfAttention: multi-head dot-product self-attention over all positions."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ntkserve.builders.arguments import ArgumentError, Axis, Count, Flag, Real, builder
from ntkserve.builders.common import channels_last, single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb

_MECHANISMS = {
    "SOFTMAX": pb.ATTENTION_MECHANISM_SOFTMAX,
    "IDENTITY": pb.ATTENTION_MECHANISM_IDENTITY,
    "ABS": pb.ATTENTION_MECHANISM_ABS,
    "RELU": pb.ATTENTION_MECHANISM_RELU,
}
_EMBEDDINGS = {
    "NONE": pb.POSITIONAL_EMBEDDING_NONE,
    "SUM": pb.POSITIONAL_EMBEDDING_SUM,
    "CONCAT": pb.POSITIONAL_EMBEDDING_CONCAT,
}


def _named(value: object, names: Mapping[str, int], what: str) -> int:
    """NT's enum members (AttentionMechanism.SOFTMAX) or their names, in any case."""
    name = str(getattr(value, "name", value)).upper()
    if name not in names:
        raise ArgumentError(what, f"must be one of {sorted(names)}, got {value!r}")
    return names[name]


@builder
def GlobalSelfAttention(
    n_chan_out: Count,
    n_chan_key: Count,
    n_chan_val: Count,
    n_heads: Count,
    linear_scaling: Flag = True,
    W_key_std: Real = 1.0,
    W_value_std: Real = 1.0,
    W_query_std: Real = 1.0,
    W_out_std: Real = 1.0,
    b_std: Real | None = None,
    attention_mechanism: str = "SOFTMAX",
    pos_emb_type: str = "NONE",
    pos_emb_p_norm: Real = 2,
    pos_emb_decay_fn: Callable[[float], float] | None = None,
    n_chan_pos_emb: Count | None = None,
    W_pos_emb_std: Real = 1.0,
    val_pos_emb: Flag = False,
    batch_axis: Axis = 0,
    channel_axis: Axis = -1,
) -> Architecture:
    """Self-attention over every position of (N, *spatial, C) inputs (Hron et al. 2020).

    `pos_emb_decay_fn` must be None: a Python function cannot travel to the server, so the
    positional embeddings are independent per position (NT's default). `pos_emb_p_norm`
    is accepted for NT's signature and, as in NT, has no effect without a decay function.
    `linear_scaling=False` (1/sqrt(n_chan_key)) is refused by the server unless
    `attention_mechanism='IDENTITY'`: there is no known closed form otherwise.
    """
    channels_last(batch_axis, channel_axis)
    if pos_emb_decay_fn is not None:
        raise ArgumentError(
            "pos_emb_decay_fn",
            "must be None: a Python function cannot be sent to the server; ntkserve's "
            "positional embeddings are independent per position (neural-tangents' default)",
        )
    del pos_emb_p_norm  # used by neural-tangents only together with pos_emb_decay_fn
    attention = pb.GlobalSelfAttention(
        n_chan_out=int(n_chan_out),
        n_chan_key=int(n_chan_key),
        n_chan_val=int(n_chan_val),
        n_heads=int(n_heads),
        linear_scaling=bool(linear_scaling),
        w_key_std=float(W_key_std),
        w_value_std=float(W_value_std),
        w_query_std=float(W_query_std),
        w_out_std=float(W_out_std),
        attention_mechanism=_named(  # type: ignore[arg-type]
            attention_mechanism, _MECHANISMS, "attention_mechanism"
        ),
        pos_emb_type=_named(pos_emb_type, _EMBEDDINGS, "pos_emb_type"),  # type: ignore[arg-type]
        w_pos_emb_std=float(W_pos_emb_std),
        val_pos_emb=bool(val_pos_emb),
    )
    if b_std is not None:
        attention.b_std = float(b_std)
    if n_chan_pos_emb is not None:
        attention.n_chan_pos_emb = int(n_chan_pos_emb)
    return single(global_self_attention=attention)
