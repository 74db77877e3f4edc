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

from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_server.kernels.kernel import Kernel
from ntkserve_server.kernels.rows import Hyper, LayerRow, Role, Rule, Violations, finite


def dense_rule(layer: pb.Dense) -> Rule:
    standard = layer.parameterization == pb.PARAMETERIZATION_STANDARD
    has_bias = layer.HasField("b_std")
    s_in, out_width = layer.s_in, layer.out_dim * layer.s_out

    def rule(k: Kernel, hp: Hyper) -> Kernel:
        w2 = hp["w_std"] ** 2
        b2 = hp["b_std"] ** 2 if has_bias else None

        def affine(m: object) -> object:
            if m is None:
                return None
            return w2 * m + b2 if b2 is not None else w2 * m  # type: ignore[operator]

        nngp = affine(k.nngp)
        ntk = k.ntk
        if ntk is not None:
            if standard:
                ntk = (k.width / s_in) * k.nngp + w2 * ntk
                if has_bias:
                    ntk = ntk + 1
            else:
                ntk = nngp + w2 * ntk  # type: ignore[operator]
        return k.replace(
            nngp=nngp,
            cov1=affine(k.cov1),
            cov2=affine(k.cov2),
            ntk=ntk,
            width=out_width,
            is_gaussian=True,
        )

    return rule


def ntk_by_default(layer: pb.Dense | pb.Conv) -> None:
    """The enum's zero value means neural-tangents' default: make it explicit."""
    if layer.parameterization == pb.PARAMETERIZATION_UNSPECIFIED:
        layer.parameterization = pb.PARAMETERIZATION_NTK


def _check(layer: pb.Dense) -> Violations:
    out = finite(layer, "w_std", "b_std", nonnegative=True)
    if layer.out_dim < 1:
        out.append(("out_dim", "is required and must be >= 1"))
    for name in ("s_in", "s_out"):
        if getattr(layer, name) < 1:
            out.append((name, f"must be >= 1, got {getattr(layer, name)}"))
    if layer.parameterization not in pb.Parameterization.values():
        out.append(("parameterization", f"unknown value {layer.parameterization}"))
    return out


DENSE = LayerRow(
    message=pb.Dense,
    role=Role.AFFINE,
    build=dense_rule,
    defaults={"w_std": 1.0, "s_in": 1, "s_out": 1},
    hyper=("w_std", "b_std"),
    check=_check,
    canonical=ntk_by_default,
)
