"""Hyper-parameter values written into an architecture by their paths (`KernelFn.
hyper_parameter_paths`, e.g. "architecture.layers[0].dense.w_std" or
"architecture.layers[3].polynomial.coef[1]"): the architecture a tuned network is, to
register and use like any other; and the same values as a KernelFn's `params` (tuning)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.errors import InputError

_SEGMENT = re.compile(r"([a-z_0-9]+)(?:\[(\d+)\])?")


def _segment(text: str, path: str) -> tuple[str, int | None]:
    found = _SEGMENT.fullmatch(text)
    if found is None:
        raise InputError(path, f"is not a hyper-parameter path (at {text!r})")
    index = found.group(2)
    return found.group(1), None if index is None else int(index)


def with_values(architecture: pb.Architecture, values: Mapping[str, float]) -> pb.Architecture:
    """A copy of `architecture` with each path's value set (InputError for a path it lacks)."""
    out = pb.Architecture()
    out.CopyFrom(architecture)
    for path, value in values.items():
        head, *middle, last = path.split(".")
        if head != "architecture" or not middle:
            raise InputError(path, "is not a hyper-parameter path (it starts 'architecture.')")
        try:
            node = out
            for text in middle:
                name, index = _segment(text, path)
                node = getattr(node, name)
                node = node if index is None else node[index]
            name, index = _segment(last, path)
            if index is None:
                setattr(node, name, float(value))
            else:
                getattr(node, name)[index] = float(value)
        except (AttributeError, IndexError, TypeError) as e:
            raise InputError(
                path, f"is not a hyper-parameter path of this architecture ({e})"
            ) from None
    return out


def params_with(params: Any, paths: Sequence[str], values: Mapping[str, float]) -> Any:
    """`params` (a KernelFn's pytree, its leaves in `paths`' order) with the values named."""
    leaves, structure = jax.tree.flatten(params)
    index = {path: i for i, path in enumerate(paths)}
    for path, value in values.items():
        if path not in index:
            raise InputError(path, "is not a hyper-parameter path of this architecture")
        leaves[index[path]] = float(value)
    return jax.tree.unflatten(structure, leaves)
