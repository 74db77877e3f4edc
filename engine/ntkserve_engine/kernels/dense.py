"""Dense: the affine layer rule, in the NTK and standard parameterizations.

NTK parameterization (Jacot et al. 2018; Lee et al. 2019, eq. 4-5):
    nngp' = W_std^2 nngp + b_std^2,   ntk' = nngp' + W_std^2 ntk.
Standard parameterization (Sohl-Dickstein et al. 2020, arXiv:2001.07301): the weights'
gradient adds the finite input width times the input covariance, and a bias (even one with
b_std = 0) adds 1, because it is trained:
    ntk' = (n_in / s_in) nngp + W_std^2 ntk + [bias present].
`b_std` absent means no bias at all, which is why it is `optional` on the wire.
"""

from __future__ import annotations

from jax import Array
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import Hyper, LayerRow, Role, Rule, Violations, finite

# The messages with weights and an optional bias: Dense and the convolutions.
Affine = pb.Dense | pb.Conv | pb.ConvTranspose | pb.ConvLocal


def affine_update(
    k: Kernel, mean: Kernel, hp: Hyper, layer: Affine, fan_in: float, out_width: int
) -> Kernel:
    """The update shared by Dense and Conv. `mean` is k averaged over the filter's offsets
    (k itself for Dense); `fan_in` the inputs one output unit sees (n_in, or C_in |F|)."""
    w2 = hp["w_std"] ** 2
    has_bias = layer.HasField("b_std")
    b2 = hp["b_std"] ** 2 if has_bias else None

    def affine(m: Array | None) -> Array | None:
        if m is None:
            return None
        return w2 * m + b2 if b2 is not None else w2 * m

    nngp = affine(mean.nngp)
    ntk = mean.ntk
    if ntk is not None:
        if layer.parameterization == pb.PARAMETERIZATION_STANDARD:
            ntk = (fan_in / layer.s_in) * mean.nngp + w2 * ntk + (1.0 if has_bias else 0.0)
        else:
            ntk = nngp + w2 * ntk  # type: ignore[operator]
    return mean.replace(
        nngp=nngp,
        cov1=affine(mean.cov1),
        cov2=affine(mean.cov2),
        ntk=ntk,
        width=out_width,
        is_gaussian=True,
    )


def dense_rule(layer: pb.Dense) -> Rule:
    out_width = layer.out_dim * layer.s_out
    return lambda k, hp: affine_update(k, k, hp, layer, k.width, out_width)


def check_affine(layer: Affine, width_field: str) -> Violations:
    out = finite(layer, "w_std", "b_std", nonnegative=True)
    if getattr(layer, width_field) < 1:
        out.append((width_field, "is required and must be >= 1"))
    for name in ("s_in", "s_out"):
        if getattr(layer, name) < 1:
            out.append((name, f"must be >= 1, got {getattr(layer, name)}"))
    if layer.parameterization not in pb.Parameterization.values():
        out.append(("parameterization", f"unknown value {layer.parameterization}"))
    return out


def ntk_by_default(layer: Affine) -> None:
    """The enum's zero value means neural-tangents' default: make it explicit."""
    if layer.parameterization == pb.PARAMETERIZATION_UNSPECIFIED:
        layer.parameterization = pb.PARAMETERIZATION_NTK


DENSE = LayerRow(
    message=pb.Dense,
    role=Role.AFFINE,
    build=dense_rule,
    defaults={"w_std": 1.0, "s_in": 1, "s_out": 1},
    hyper=("w_std", "b_std"),
    check=lambda layer: check_affine(layer, "out_dim"),
    canonical=ntk_by_default,
)
