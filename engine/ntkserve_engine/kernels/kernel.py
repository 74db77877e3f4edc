"""`Kernel`: the state every layer rule maps to a new state (NT's `Kernel`, pared down).

A rule is a function (Kernel, Hyper) -> Kernel (`rows.Rule`): the layer's input kernel and
its hyper-parameters (traced values, so one compilation serves every W_std) to its output
kernel; jax's `example_libraries/stax` contract, with the hyper-parameters an argument.
Arrays are traced; the other fields are static, decided when the network is compiled.

Layout of the arrays, for inputs of shape (N, *S, C) with spatial positions S (S = () for
(N, C) inputs):
- same positions (`position_pairs=False`): only same-position covariances, nngp
  (N1, N2, *S). Enough for networks whose readout is Flatten: O(N1 N2 |S|) work (Novak et
  al. 2019).
- position pairs (`position_pairs=True`): every pair of positions, nngp (N1, N2, *S, *S),
  positions of x1 first. Needed by pooling readouts: O(N1 N2 |S|^2) work.
cov1 (N1, *P) and cov2 (N2, *P) are the same-example blocks in that layout (P = S or S + S).

One name per concept, in the engine and the server alike:
- `position_pairs`: the covariance of every pair of positions is tracked (the wire's
  `StreamKernelPlan.position_pairs` means the same); a layer that needs it says
  `needs_position_pairs` (`LayerRow`, `Node`).
- `symmetric`: x2 is x1 (x2=None). The wire's `StreamKernelPlan.mirrored` is what the client
  does about it: it mirrors the tiles below the diagonal.
- "diagonal" means an example (or a position) with itself (`diagonal_index`,
  `position_diagonal`), never x2 = x1. The server's tiles "on the diagonal" of a tile grid
  (rows and columns over the same examples) are another concept and keep that name.

Masked inputs (`mask_constant`, as in neural-tangents): keep1 (N1, *S) and keep2 (N2, *S) are
1 where a position holds data and 0 where every channel of it equals the mask constant;
entries of the kernel that involve a masked position are 0 (see `masking.py`).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax


@dataclasses.dataclass(frozen=True)
class Kernel:
    """Second moments of one layer's outputs over the inputs x1 (N1 rows) and x2 (N2 rows).

    nngp:  covariance E[f(x1) f(x2)] per unit of width, (N1, N2, *P).
    cov1:  (N1, *P) covariances of each x1 row with itself; cov2: (N2, *P). Both None when
           x2 is x1: they are then nngp's batch diagonal, read from it so they agree exactly.
    ntk:   the neural tangent kernel, like nngp, or None when it was not asked for.
    width: the layer's finite output width (the standard parameterization needs it).
    is_gaussian: the outputs are Gaussian (an affine layer came last), so a
      nonlinearity's expectation can be taken in closed form.
    symmetric: x2 is x1.
    spatial: the positions S (() for inputs without spatial dimensions).
    position_pairs: covariances between all pairs of positions are tracked (see the module doc).
    keep1, keep2: 1 at the positions of x1 (x2) that hold data, 0 at masked ones, (N, *S);
      None when nothing is masked (keep2 None and keep1 set: x2 is x1).
    pattern1, pattern2: the graphs' adjacency of x1's (x2's) examples, (N, *S, *S), for
      Aggregate layers; None when the network has none (pattern2 None: x2 is x1).
    """

    nngp: Array
    cov1: Array | None
    cov2: Array | None
    ntk: Array | None
    width: int
    is_gaussian: bool
    symmetric: bool
    spatial: tuple[int, ...] = ()
    position_pairs: bool = False
    keep1: Array | None = None
    keep2: Array | None = None
    pattern1: Array | None = None
    pattern2: Array | None = None

    def replace(self, **changes: object) -> Kernel:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def var1(self) -> Array:
        """Variances of the x1 rows at each position: (N1, *S)."""
        if self.cov1 is None:
            return self.nngp[
                diagonal_index(self.nngp.shape[0], self.spatial, self.position_pairs, True)
            ]
        return position_diagonal(self.cov1, self.spatial, self.position_pairs)

    @property
    def var2(self) -> Array:
        """Variances of the x2 rows at each position: (N2, *S)."""
        if self.cov2 is None:
            return self.var1
        return position_diagonal(self.cov2, self.spatial, self.position_pairs)

    def map_arrays(self, fn: Callable[[Array, int], Array], **changes: object) -> Kernel:
        """Applies fn(array, number of batch axes) to every array: a linear layer's update."""
        return self.replace(
            nngp=fn(self.nngp, 2),
            cov1=None if self.cov1 is None else fn(self.cov1, 1),
            cov2=None if self.cov2 is None else fn(self.cov2, 1),
            ntk=None if self.ntk is None else fn(self.ntk, 2),
            **changes,
        )


jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "cov1", "cov2", "ntk", "keep1", "keep2", "pattern1", "pattern2"],
    meta_fields=["width", "is_gaussian", "symmetric", "spatial", "position_pairs"],
)


def materialized(a: Array) -> Array:
    """`a` itself (its first entry written back: an exact no-op), as a value XLA stores
    instead of recomputing it in every later consumer.

    XLA-CPU keeps a layer's expensive ops (square roots, divisions) as fusions of their own
    and duplicates cheap elementwise ops into each consumer; through a stack of layers whose
    kernels are never written to memory, layer l's fusions recompute the cheap ops of layers
    1..l, so compile time grows with depth squared. Measured (x2 given, NNGP+NTK, float64,
    first call): a 16-layer Erf network 14.9 s -> 1.9 s, ReLU 3.9 -> 0.9 s. Symmetric
    kernels write their diagonal at every layer (`diagonal_index`), which does the same.
    (`lax.optimization_barrier` does not: XLA-CPU removes it before fusion.)"""
    corner = (0,) * a.ndim
    return a.at[corner].set(a[corner])


def diagonal_index(
    n: int, spatial: tuple[int, ...], position_pairs: bool, pair: bool
) -> tuple[np.ndarray, ...]:
    """Index of the entries where an example meets itself at the same position.

    For a (n, n, *P) array when `pair`, else for a (n, *P) array; the indexed
    result has shape (n, *S).
    """
    d = len(spatial)
    batch = np.arange(n).reshape((n,) + (1,) * d)
    grids = tuple(g[None] for g in np.indices(spatial)) if d else ()
    positions = grids * 2 if position_pairs else grids
    return ((batch, batch) if pair else (batch,)) + positions


def position_diagonal(cov: Array, spatial: tuple[int, ...], position_pairs: bool) -> Array:
    """(n, *P) -> (n, *S): each position with itself."""
    if not position_pairs or not spatial:
        return cov
    return cov[diagonal_index(cov.shape[0], spatial, True, False)]


def as_rows(var: Array, d: int, position_pairs: bool, pair: bool) -> Array:
    """(n, *S) variances, shaped to broadcast along the first batch axis of a block."""
    x = var[:, None] if pair else var
    return x.reshape(x.shape + (1,) * d) if position_pairs else x


def as_cols(var: Array, d: int, position_pairs: bool, pair: bool) -> Array:
    """(n, *S) variances, shaped to broadcast along the last batch axis of a block."""
    x = var[None] if pair else var
    if not position_pairs:
        return x
    batch = x.shape[: x.ndim - d]
    return x.reshape(batch + (1,) * d + x.shape[x.ndim - d :])


def scale_positions(k: Kernel, s1: Array, s2: Array | None) -> Kernel:
    """Every entry times s1 at its x1 position and s2 at its x2 position (s: (n, *S); s2
    None: x2 is x1). A per-example, per-position rescaling: LayerNorm's variances, masks,
    counts of the positions an average runs over."""
    d, position_pairs = len(k.spatial), k.position_pairs
    s2_ = s1 if s2 is None else s2
    pair = as_rows(s1, d, position_pairs, True) * as_cols(s2_, d, position_pairs, True)

    def self_block(cov: Array | None, s: Array) -> Array | None:
        if cov is None:
            return None
        return cov * (as_rows(s, d, position_pairs, False) * as_cols(s, d, position_pairs, False))

    return k.replace(
        nngp=k.nngp * pair,
        cov1=self_block(k.cov1, s1),
        cov2=self_block(k.cov2, s2_),
        ntk=None if k.ntk is None else k.ntk * pair,
    )


def _gram(a: Array, b: Array, position_pairs: bool) -> Array:
    """Inner products over channels at full precision (no TF32: CPU and GPU agree)."""
    d = a.ndim - 2
    if position_pairs and _pairs_as_batched_dot(a, b):
        return _pair_gram(a, b)
    s1 = string.ascii_lowercase[:d]
    s2 = string.ascii_lowercase[d : 2 * d] if position_pairs else s1
    spec = f"n{s1}z,m{s2}z->nm{s1}{s2 if position_pairs else ''}"
    return jnp.einsum(spec, a, b, precision=lax.Precision.HIGHEST)


def _pairs_as_batched_dot(a: Array, b: Array) -> bool:
    """Whether `_pair_gram`'s broadcast operands (n, m, P, C) are no larger than its result
    (n, m, P, P'): images of few channels (32x32x3: 0.6 % of it), not long sequences of many
    features, whose broadcast operands would take more memory than the kernel itself."""
    p1, p2 = math.prod(a.shape[1:-1]), math.prod(b.shape[1:-1])
    return a.shape[-1] * (p1 + p2) <= p1 * p2


def _pair_gram(a: Array, b: Array) -> Array:
    """(n, m, *P, *P') inner products as one dot batched over (n, m), which writes them in
    place. The einsum `nPz,mQz->nmPQ` is a GEMM into (n, P, m, Q) and then a transpose:
    for 32x32x3 images 1.7-2.3 ms a pair of images here, against 0.13 ms this way. Each
    (n, m) pair is its own small product, so its bits do not depend on the other examples
    of the call (a stream's tiles agree with one call)."""
    n, m, channels = a.shape[0], b.shape[0], a.shape[-1]
    p1, p2 = math.prod(a.shape[1:-1]), math.prod(b.shape[1:-1])
    rows = jnp.broadcast_to(a.reshape(n, 1, p1, channels), (n, m, p1, channels))
    cols = jnp.broadcast_to(b.reshape(1, m, p2, channels), (n, m, p2, channels))
    dims = (((3,), (3,)), ((0, 1), (0, 1)))
    out = lax.dot_general(rows, cols, dims, precision=lax.Precision.HIGHEST)
    return out.reshape(n, m, *a.shape[1:-1], *b.shape[1:-1])


def _self_gram(a: Array, position_pairs: bool) -> Array:
    """Each example with itself: (n, *P)."""
    d = a.ndim - 2
    s1 = string.ascii_lowercase[:d]
    s2 = string.ascii_lowercase[d : 2 * d] if position_pairs else s1
    spec = f"n{s1}z,n{s2}z->n{s1}{s2 if position_pairs else ''}"
    return jnp.einsum(spec, a, a, precision=lax.Precision.HIGHEST)


def masked_entries(x: Array, mask_constant: Array | float) -> Array:
    """Where x equals the mask constant (where x is NaN, for a NaN constant)."""
    c = jnp.asarray(mask_constant, x.dtype)
    return jnp.where(jnp.isnan(c), jnp.isnan(x), x == c)


def input_kernel(
    x1: Array,
    x2: Array | None,
    with_ntk: bool,
    position_pairs: bool = False,
    mask_constant: Array | float | None = None,
    patterns: tuple[Array | None, Array | None] = (None, None),
) -> Kernel:
    """The kernel of the inputs themselves: inner products over channels / channel count.

    With `mask_constant`, entries equal to it are zeroed first, and a position (or, for
    (N, C) inputs, an example) whose every channel equals it is masked (keep = 0).
    `patterns` are the graphs' adjacency for Aggregate layers (x1's, x2's)."""
    keep1 = keep2 = None
    if mask_constant is not None:
        masked1 = masked_entries(x1, mask_constant)
        keep1 = 1 - jnp.all(masked1, axis=-1).astype(x1.dtype)
        x1 = jnp.where(masked1, 0, x1)
        if x2 is not None:
            masked2 = masked_entries(x2, mask_constant)
            keep2 = 1 - jnp.all(masked2, axis=-1).astype(x2.dtype)
            x2 = jnp.where(masked2, 0, x2)
    width = x1.shape[-1]
    spatial = tuple(x1.shape[1:-1])
    position_pairs = position_pairs and bool(spatial)
    # Multiply by the reciprocal, never divide by a constant: XLA rewrites x / c into
    # x * (1 / c) in some programs and not others, and eager, jitted and differentiated
    # calls must return the same bits.
    scale = 1.0 / width
    if x2 is None:
        nngp = _gram(x1, x1, position_pairs) * scale
        cov1 = cov2 = None
    else:
        nngp = _gram(x1, x2, position_pairs) * scale
        cov1 = _self_gram(x1, position_pairs) * scale
        cov2 = _self_gram(x2, position_pairs) * scale
    return Kernel(
        nngp=nngp,
        cov1=cov1,
        cov2=cov2,
        ntk=jnp.zeros_like(nngp) if with_ntk else None,
        width=width,
        is_gaussian=False,
        symmetric=x2 is None,
        spatial=spatial,
        position_pairs=position_pairs,
        keep1=keep1,
        keep2=keep2,
        pattern1=patterns[0],
        pattern2=patterns[1],
    )
