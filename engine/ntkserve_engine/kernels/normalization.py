"""LayerNorm and Dropout: layers that rescale their inputs, by a variance or a keep rate.

LayerNorm (Ba et al. 2016) over the channel axis, and optionally spatial axes, of centred
Gaussian inputs: the mean over infinitely many channels is 0 and the variance concentrates
on q (the kernel's diagonal, averaged over the spatial axes named), so the layer divides
each unit by a deterministic sqrt(q + eps) (Novak et al. 2020, neural-tangents' LayerNorm):
    K'(x1 s, x2 t) = K(x1 s, x2 t) / sqrt((q1(s) + eps)(q2(t) + eps)),   NTK likewise.
The derivative through the variance adds O(1/width) to the NTK, so it vanishes in the limit.
With masked inputs the spatial mean runs over the positions present.

Dropout (Srivastava et al. 2014), `rate` the keep probability as in neural-tangents: in
'train' mode y = m x / rate with m ~ Bernoulli(rate) drawn per unit, example and position,
so E[m m' / rate^2] is 1 for different examples or positions and 1 / rate for an example
with itself at one position: only that entry of the kernel (NNGP and NTK) is divided by
rate. In 'test' mode Dropout is the identity.
"""

from __future__ import annotations

from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import safe_math
from ntkserve_engine.kernels.kernel import Kernel, diagonal_index, scale_positions
from ntkserve_engine.kernels.masking import reciprocal_counts
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Spatial, Violations, finite
from ntkserve_engine.kernels.windows import ShapeProblem

# Inputs are (N, *spatial, C) with at most 3 spatial dimensions: axes -5..4.
MAX_RANK = 5


def _spatial_axes(axes: list[int], spatial: Spatial) -> tuple[int, ...]:
    """The positions of `spatial` that the named axes normalize over; ShapeProblem when the
    axes do not fit an input of this rank (the channel axis is required, batch refused)."""
    rank = len(spatial) + 2
    if any(not -rank <= a < rank for a in axes):
        raise ShapeProblem(f"axis {axes} does not fit an input of rank {rank}")
    resolved = {a % rank for a in axes}
    if rank - 1 not in resolved:
        raise ShapeProblem(
            f"axis {axes} must include the channel axis (-1): only a normalization over "
            "infinitely many channels has a deterministic limit"
        )
    if 0 in resolved:
        raise ShapeProblem(f"axis {axes} includes the batch axis, which is not supported")
    return tuple(sorted(a - 1 for a in resolved if a != rank - 1))


def _reciprocal_root(v: Array) -> Array:
    """1 / sqrt(v), and 0 where v is 0 (eps = 0 and a zero-variance unit), with a finite
    derivative there too."""
    root = safe_math.sqrt(v)
    positive = root > 0
    return positive / (root + (1 - positive))


def layer_norm_rule(layer: pb.LayerNorm) -> Rule:
    axes = list(layer.axis)

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        over = tuple(1 + i for i in _spatial_axes(axes, k.spatial))

        def scale(var: Array, keep: Array | None) -> Array:
            v = var + hp["eps"]
            if over and keep is None:
                v = v.mean(axis=over, keepdims=True)
            elif over and keep is not None:  # the mean over the positions present
                present = keep.sum(axis=over, keepdims=True)
                v = (v * keep).sum(axis=over, keepdims=True) * reciprocal_counts(present)
            return _reciprocal_root(v)

        if k.symmetric:
            return scale_positions(k, scale(k.var1, k.keep1), None)
        keep2 = k.keep1 if k.keep2 is None else k.keep2
        return scale_positions(k, scale(k.var1, k.keep1), scale(k.var2, keep2))

    return rule


def _check_layer_norm(layer: pb.LayerNorm) -> Violations:
    out = finite(layer, "eps", nonnegative=True)
    axes = list(layer.axis)
    if any(a == 0 or not -MAX_RANK <= a < MAX_RANK for a in axes):
        out.append(
            (
                "axis",
                f"each axis must be in -{MAX_RANK}..{MAX_RANK - 1} and not the batch axis 0 "
                f"(a kernel that depends on the rest of the batch cannot be tiled), got {axes}",
            )
        )
    if len(set(axes)) != len(axes):
        out.append(("axis", f"names an axis twice: {axes}"))
    return out


def _canonical_layer_norm(layer: pb.LayerNorm) -> None:
    axes = sorted(layer.axis) or [-1]
    del layer.axis[:]
    layer.axis.extend(axes)


def _layer_norm_spatial(layer: pb.LayerNorm, spatial: Spatial) -> Spatial:
    _spatial_axes(list(layer.axis), spatial)
    return spatial


LAYER_NORM = LayerRow(
    message=pb.LayerNorm,
    role=Role.RESCALING,
    build=layer_norm_rule,
    defaults={"eps": 1e-12},
    hyper=("eps",),
    check=_check_layer_norm,
    canonical=_canonical_layer_norm,
    out_spatial=_layer_norm_spatial,
)


# -- Dropout ------------------------------------------------------------------------------


def dropout_rule(layer: pb.Dropout) -> Rule:
    if layer.mode == pb.DROPOUT_MODE_TEST:
        return lambda k, hp: k

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        factor = 1 / hp["rate"]
        d, position_pairs = len(k.spatial), k.position_pairs

        def self_block(cov: Array | None) -> Array | None:
            if cov is None:
                return None
            if not position_pairs or d == 0:
                return cov * factor  # every entry is a position with itself
            return cov.at[diagonal_index(cov.shape[0], k.spatial, True, False)].multiply(
                factor, unique_indices=True
            )

        nngp, ntk = k.nngp, k.ntk
        if k.symmetric:  # the Gram matrix: its diagonal is each example with itself
            index = diagonal_index(nngp.shape[0], k.spatial, position_pairs, True)
            nngp = nngp.at[index].multiply(factor, unique_indices=True)
            ntk = None if ntk is None else ntk.at[index].multiply(factor, unique_indices=True)
        return k.replace(
            nngp=nngp,
            cov1=self_block(k.cov1),
            cov2=self_block(k.cov2),
            ntk=ntk,
            is_gaussian=False,
        )

    return rule


def _check_dropout(layer: pb.Dropout) -> Violations:
    out: Violations = []  # an absent rate is reported as required
    if layer.HasField("rate") and not 0 < layer.rate <= 1:
        out.append(
            ("rate", f"is the keep probability and must satisfy 0 < rate <= 1, got {layer.rate}")
        )
    if layer.mode not in pb.DropoutMode.values():
        out.append(("mode", f"unknown value {layer.mode}"))
    return out


def _canonical_dropout(layer: pb.Dropout) -> None:
    if layer.mode == pb.DROPOUT_MODE_UNSPECIFIED:
        layer.mode = pb.DROPOUT_MODE_TRAIN


DROPOUT = LayerRow(
    message=pb.Dropout,
    role=Role.MASKING,
    build=dropout_rule,
    required=("rate",),
    hyper=("rate",),
    check=_check_dropout,
    canonical=_canonical_dropout,
    role_of=lambda layer: Role.LINEAR if layer.mode == pb.DROPOUT_MODE_TEST else Role.MASKING,
)
