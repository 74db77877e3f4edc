"""Compiles a canonical architecture tree into one `Node`: a fold over layers and combinators.

A layer becomes a `Node` from its row (`table.LAYERS`): its rule, with masks carried and
shape errors given the layer's path. A combinator becomes a `Node` from its row
(`table.COMBINATORS`) and its children's nodes, built first. The static checks of the tree
(branch counts, Gaussian inputs) are `walk.py`'s, before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_engine.kernels import masking
from ntkserve_engine.kernels.combinators import sequence
from ntkserve_engine.kernels.kernel import Kernel
from ntkserve_engine.kernels.rows import LayerRow, Node, Shapes, State, Walked
from ntkserve_engine.kernels.table import COMBINATORS, LAYERS
from ntkserve_engine.kernels.windows import ShapeProblem


def build_sequence(layers: Sequence[pb.Layer], path: str) -> Node:
    """The layers one after the other; `path` names the sequence ("architecture.layers")."""
    return sequence([build(layer, f"{path}[{i}]") for i, layer in enumerate(layers)])


def build(layer: pb.Layer, path: str) -> Node:
    kind = str(layer.WhichOneof("layer"))
    message = getattr(layer, kind)
    here = f"{path}.{kind}"
    if kind in LAYERS:
        return _layer_node(LAYERS[kind], message, here)
    row = COMBINATORS[kind]
    children = [build(child, f"{here}.{field}") for field, child in row.children_of(message)]
    return row.build(message, here, children)


def _leaf_names(values: dict[str, Any], here: str) -> dict[str, Any]:
    return {
        name: tuple(f"{here}.{name}[{i}]" for i in range(len(v)))
        if isinstance(v, tuple)
        else f"{here}.{name}"
        for name, v in values.items()
    }


def _layer_node(row: LayerRow, message: Any, here: str) -> Node:
    rule = row.build(message)

    def spatial(shapes: Shapes) -> Walked:
        try:
            return row.out_spatial(message, shapes), 1
        except ShapeProblem as e:
            raise ShapeProblem(f"{here}: {e}") from None

    def apply(state: State, params: Any) -> State:
        out = rule(state, params)
        if isinstance(state, Kernel) and state.keep1 is not None:
            out = masking.carry(row.keep_after, message, state, out, here)
        return out

    values = row.hyper_values(message)
    return Node(apply, values, spatial, row.needs_position_pairs, _leaf_names(values, here))
