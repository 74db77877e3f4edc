"""The one check of the stax builders' arguments, made before any message is built.

A builder says what each parameter takes in its type hints, with the aliases below (`Count`,
`Real`, `Ints`, `Spec`, ...); `@builder` reads those hints once, when the module loads, and
checks every call against them. A bad argument raises TypeError (the wrong type) or
ValueError (a value the message cannot hold, or a choice that does not exist) whose message
names the builder, the parameter and the fix:

    Conv: filter_shape must be a tuple of ints like (3, 3), got 3

Only what the wire can carry is checked here (an unsigned field holds no -1). The rules of
the network (a width >= 1, a degree <= 16) are the server's, checked at registration, so that
every client language gets the same answers. The helpers that turn spelled choices into enum
values (`common.padding`, ...) raise `ArgumentError`, which `@builder` names the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec

import numpy as np

from ntkserve.spec import Architecture

P = ParamSpec("P")
_UINT64 = 2**64
_UINT32 = 2**32
_INT64 = 2**63


class ArgumentError(ValueError):
    """A bad value of one parameter; `@builder` adds the builder's name."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter} {problem}")

    def of(self, builder: str) -> Exception:
        """The error a user sees: a plain TypeError or ValueError naming `builder`."""
        kind = TypeError if isinstance(self, TypeError) else ValueError
        return kind(f"{builder}: {self.parameter} {self.problem}")


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Takes:
    """What a parameter takes: `fix` says it in words; `is_type` and `in_range` test it."""

    fix: str
    is_type: Callable[[Any], bool]
    in_range: Callable[[Any], bool] = lambda value: True

    def check(self, parameter: str, value: Any) -> None:
        if not self.is_type(value):
            raise ArgumentTypeError(parameter, f"must be {self.fix}, got {_shown(value)}")
        if not self.in_range(value):
            raise ArgumentError(parameter, f"must be {self.fix}, got {value!r}")


def _shown(value: Any) -> str:
    """The wrong argument, with the likely slip named."""
    if isinstance(value, list | tuple) and value and isinstance(value[0], Architecture):
        return f"a {type(value).__name__} of layers; pass them one by one, or unpack it: *layers"
    if callable(value) and getattr(value, "__module__", "").startswith("ntkserve.builders"):
        return f"the builder {value.__name__} itself; call it: {value.__name__}(...)"
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    # A 0-d numpy array of numbers (what indexing or a reduction returns).
    return getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None


def _items(value: Any) -> list[Any] | None:
    """The entries of a sequence argument (a tuple, list or numpy array; not an iterator,
    which the check would use up); None when `value` is not one."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        return None
    return list(value)


def _all(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def every(value: Any) -> bool:
        items = _items(value)
        return items is not None and all(test(item) for item in items)

    return every


def _below(limit: int) -> Callable[[Any], bool]:
    return lambda value: 0 <= value < limit


def _pair(value: Any) -> bool:
    items = _items(value)
    return items is not None and len(items) == 2 and all(_is_int(v) for v in items)


# Unsigned 64-bit fields: widths, channels, counts.
Count = Annotated[int, Takes("an int >= 0", _is_int, _below(_UINT64))]
# Unsigned 32-bit fields: degrees.
SmallCount = Annotated[int, Takes("an int from 0 to 2**32 - 1", _is_int, _below(_UINT32))]
# Signed 64-bit fields: axes.
Axis = Annotated[int, Takes("an int", _is_int, lambda v: -_INT64 <= v < _INT64)]
Real = Annotated[float, Takes("a real number like 1.5", _is_real)]
Flag = Annotated[bool, Takes("True or False", lambda v: isinstance(v, bool | np.bool_))]
Ints = Annotated[
    Sequence[int],
    Takes("a tuple of ints like (3, 3)", _all(_is_int), _all(_below(_UINT64))),
]
Axes = Annotated[
    int | Sequence[int],
    Takes("an int or a tuple of ints like (-2, -1)", lambda v: _is_int(v) or _all(_is_int)(v)),
]
Reals = Annotated[
    Sequence[float], Takes("a sequence of real numbers like (0.0, 1.0)", _all(_is_real))
]
Scales = Annotated[
    Sequence[int],
    Takes("a pair of ints (s_in, s_out) like (1, 1)", _pair, _all(_below(_UINT64))),
]
Spec = Annotated[
    Architecture,
    Takes(
        "a layer or network of ntkserve.stax (e.g. stax.Relu())",
        lambda v: isinstance(v, Architecture),
    ),
]


def _takes(hint: Any) -> tuple[Takes, bool] | None:
    """The check of a type hint, and whether None is allowed; None for unchecked hints."""
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        if len(options) != 1:
            return None
        hint = options[0]
    if typing.get_origin(hint) is Annotated:
        found = [m for m in hint.__metadata__ if isinstance(m, Takes)]
        return (found[0], nullable) if found else None
    return None


def builder(fn: Callable[P, Architecture]) -> Callable[P, Architecture]:
    """`fn` with its arguments checked against its hints, and every ArgumentError it raises
    named after it."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    checks = {name: t for name in signature.parameters if (t := _takes(hints.get(name)))}
    variadic = {n for n, p in signature.parameters.items() if p.kind is p.VAR_POSITIONAL}

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> Architecture:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{fn.__name__}: {e}") from None
        try:
            for name, value in bound.arguments.items():
                if name not in checks:
                    continue
                takes, nullable = checks[name]
                values = enumerate(value) if name in variadic else [(None, value)]
                for i, v in values:
                    if not (v is None and nullable):
                        takes.check(name if i is None else f"{name}[{i}]", v)
            return fn(*args, **kwargs)
        except ArgumentError as e:
            raise e.of(fn.__name__) from None

    return checked
