"""Elementwise nonlinearities beyond the ABRelu and Erf families (neural-tangents' names).

Each returns a one-layer spec; the server computes the closed-form kernel. Parameters are
range-checked at registration (e.g. a degree above 16, Gaussian's b > 0, Rbf's gamma < 0).
"""

from __future__ import annotations

from ntkserve.builders.arguments import ArgumentError, Flag, Real, Reals, SmallCount, builder
from ntkserve.builders.common import single
from ntkserve.spec import Architecture
from ntkserve.v1 import architecture_pb2 as pb


@builder
def Sigmoid_like() -> Architecture:
    """`0.5 * erf(x / 2.4020563531719796) + 0.5`, a sigmoid with a closed-form kernel."""
    return single(sigmoid_like=pb.SigmoidLike())


@builder
def Gelu(approximate: Flag = False) -> Architecture:
    """`x * Phi(x)`. `approximate` is accepted for neural-tangents compatibility; as there,
    it only concerns finite-width evaluation, so the kernel is that of the exact Gelu."""
    return single(gelu=pb.Gelu())


@builder
def Sign() -> Architecture:
    """`sign(x)`."""
    return single(sign=pb.Sign())


@builder
def Sin(a: Real = 1.0, b: Real = 1.0, c: Real = 0.0) -> Architecture:
    """`a * sin(b * x + c)`."""
    return single(sin=pb.Sin(a=float(a), b=float(b), c=float(c)))


@builder
def Cos(a: Real = 1.0, b: Real = 1.0, c: Real = 0.0) -> Architecture:
    """`a * cos(b * x + c)`."""
    return single(cos=pb.Cos(a=float(a), b=float(b), c=float(c)))


@builder
def Rbf(gamma: Real = 1.0) -> Architecture:
    """`sqrt(2) * sin(sqrt(2 * gamma) * x + pi/4)`: its NNGP is the RBF kernel
    `exp(-gamma * ||x - x'||^2 / d)` after a Dense layer with W_std=1."""
    return single(rbf=pb.Rbf(gamma=float(gamma)))


@builder
def Exp(a: Real = 1.0, b: Real = 1.0) -> Architecture:
    """`a * exp(b * x)`."""
    return single(exp=pb.Exp(a=float(a), b=float(b)))


@builder
def Gaussian(a: Real = 1.0, b: Real = -1.0) -> Architecture:
    """`a * exp(b * x**2)`, b <= 0."""
    return single(gaussian=pb.Gaussian(a=float(a), b=float(b)))


@builder
def Monomial(degree: SmallCount) -> Architecture:
    """`x**degree`, degree 0 to 16."""
    return single(monomial=pb.Monomial(degree=int(degree)))


@builder
def RectifiedMonomial(degree: SmallCount) -> Architecture:
    """`(x >= 0) * x**degree`, degree 0 to 16 (arc-cosine kernels of Cho & Saul 2009)."""
    return single(rectified_monomial=pb.RectifiedMonomial(degree=int(degree)))


@builder
def Polynomial(coef: Reals) -> Architecture:
    """`coef[0] + coef[1] * x + ... + coef[n] * x**n` (numpy.polynomial's order)."""
    return single(polynomial=pb.Polynomial(coef=[float(c) for c in coef]))


@builder
def Hermite(degree: SmallCount) -> Architecture:
    """`He_degree(x) / sqrt(degree!)`, the normalised probabilists' Hermite polynomial."""
    return single(hermite=pb.Hermite(degree=int(degree)))


@builder
def Gabor() -> Architecture:
    """`exp(-x**2) * sin(x)`."""
    return single(gabor=pb.Gabor())


@builder
def ExpNormalized(gamma: Real = 1.0, shift: Real = -1.0, do_clip: Flag = False) -> Architecture:
    """The "Gaussian normalized kernel" (Shankar et al. 2020): `sqrt(q11 q22) *
    exp(gamma * (rho + shift))` for pre-activations with correlation rho; gamma >= 0."""
    return single(
        exp_normalized=pb.ExpNormalized(gamma=float(gamma), shift=float(shift), do_clip=do_clip)
    )


@builder
def ElementwiseNumerical(activation: str, deg: SmallCount = 25) -> Architecture:
    """Any named activation, its kernel by Gauss-Hermite quadrature of degree `deg`.

    neural-tangents' `ElementwiseNumerical(fn, deg)` takes a Python function, which cannot
    travel over the wire: name it instead, one of ACTIVATIONS ("silu" is "swish")."""
    name = {"silu": "swish"}.get(activation, activation)
    if name not in ACTIVATIONS:
        raise ArgumentError(
            "activation",
            f"must name one of {ACTIVATIONS} (a Python function cannot be sent), not the "
            f"unknown {activation!r}",
        )
    label = f"ACTIVATION_{name.upper()}"
    return single(elementwise_numerical=pb.ElementwiseNumerical(activation=label, deg=int(deg)))


ACTIVATIONS = tuple(n.removeprefix("ACTIVATION_").lower() for n in pb.Activation.keys()[1:])
