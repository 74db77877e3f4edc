"""The static walk of a canonical tree: branch counts and Gaussian inputs, before compiling.

Its state is `Abstract`: whether the current outputs are Gaussian (an affine layer came
last), or that of each branch between a FanOut and its FanIn. A nonlinearity needs Gaussian
inputs (its kernel is an expectation over Gaussian pre-activations); a layer needs one input,
a join needs branches. Combinators pass the walk through their children as their rows say
(`combinators.py`); every violation is reported with its field path.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels.rows import Abstract, LayerRow, Role, Step, Violations
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS


def check_tree(layers: Sequence[tuple[str, pb.Layer]], violations: Violations) -> None:
    """Branch counts and Gaussian inputs; `layers` are the top-level (path, layer) pairs."""
    state: Abstract = False  # the inputs are data, not Gaussian pre-activations
    for path, layer in layers:
        state = _walk(layer, path, state, violations)
    if isinstance(state, tuple):
        violations.append(
            (
                "architecture.layers",
                f"the network ends with {len(state)} branches: join them "
                "with FanInSum, FanInProd or FanInConcat",
            )
        )


def _walk(layer: pb.Layer, path: str, state: Abstract, v: Violations) -> Abstract:
    if layer.WhichOneof("layer") is None:
        return state  # reported by canonicalize
    kind = str(layer.WhichOneof("layer"))
    message = getattr(layer, kind)
    here = f"{path}.{kind}"
    if kind in LAYERS:
        return _walk_layer(LAYERS[kind], message, here, state, v)
    row = COMBINATORS[kind]
    steps: list[Step] = [
        partial(_step, child, f"{here}.{field}", v) for field, child in row.children_of(message)
    ]
    return row.walk(message, here, state, steps, v)


def _step(layer: pb.Layer, path: str, v: Violations, state: Abstract) -> Abstract:
    return _walk(layer, path, state, v)


def _walk_layer(row: LayerRow, message: Any, here: str, state: Abstract, v: Violations) -> Abstract:
    if isinstance(state, tuple):
        v.append((here, "receives branches: join them first (FanInSum, FanInProd, FanInConcat)"))
        return False
    role = row.role_for(message)
    if role in (Role.NONLINEAR, Role.RESCALING) and not state:
        needs = (
            "a nonlinearity needs Gaussian inputs: put an affine layer (Dense, "
            "Conv) before it; its kernel is an expectation over Gaussian pre-activations"
            if role is Role.NONLINEAR
            else "needs Gaussian inputs: put an affine layer (Dense, Conv) or a sum of "
            "Gaussian branches before it; its kernel is that of a centred Gaussian, "
            "rescaled by its variance"
        )
        v.append((here, needs))
    if role is Role.LINEAR:
        return state
    return role in (Role.AFFINE, Role.RESCALING)
