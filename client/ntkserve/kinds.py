"""Kernel kinds: the one table of the kernels there are (NNGP, NTK) and the one parser of a `get`.

Every layer of ntkserve names kernels through this module: the client and its CLI, the
engine (`ntkserve_engine.KINDS`, `parse_get`), the server's request decoding and its
streamed tiles, and the KServe outputs. A kind has three spellings, all derived from
`CODES`: its Python name ("ntk", also the field of a response that holds it), its wire value
(`ntkserve.v1.KernelKind`, KERNEL_KIND_NTK) and its KServe output name ("NTK").

Imports neither grpc nor jax: the engine uses it and must run with grpc unimportable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ntkserve.field_errors import FieldError
from ntkserve.v1 import kernel_service_pb2 as ks

# Python name -> wire value, in the order responses list them.
CODES: dict[str, ks.KernelKind] = {
    "nngp": ks.KERNEL_KIND_NNGP,
    "ntk": ks.KERNEL_KIND_NTK,
}
NAMES: tuple[str, ...] = tuple(CODES)
NAME_OF: dict[int, str] = {code: name for name, code in CODES.items()}
# What a request that names no kernel gets (an empty `get` on the wire).
DEFAULT = "ntk"
_LISTED = ", ".join(repr(name) for name in NAMES)
_EXPECTED = " or ".join(repr(name) for name in NAMES)


class KindError(FieldError):
    """A `get` naming no kernel, an unknown one, or one twice: (field, problem)."""


def output_name(name: str) -> str:
    """The KServe v2 output of a kind: "nngp" -> "NNGP"."""
    return name.upper()


def _wire_name(code: int) -> str:
    """The enum's own name of a wire value: KERNEL_KIND_NTK."""
    return ks.KernelKind.Name(code)


def from_names(get: str | Sequence[str], field: str = "get") -> tuple[str, ...]:
    """The kinds of a `get` from Python: "ntk" -> ("ntk",); ("nngp", "ntk") stays.

    Raises KindError (at `field`) for none, an unknown name, or a name given twice."""
    names = (get,) if isinstance(get, str) else tuple(get)
    if not names:
        raise KindError(field, f"name at least one of {_LISTED}")
    for name in names:
        if name not in CODES:
            raise KindError(field, f"unknown kernel {name!r}; expected {_EXPECTED}")
    if len(set(names)) != len(names):
        raise KindError(field, f"names a kernel twice: {names}")
    return names


def from_codes(codes: Iterable[int], field: str = "get") -> tuple[str, ...]:
    """The kinds of a `get` from the wire: KernelKind values, none meaning (DEFAULT,).

    Raises KindError at `field[i]` for the first value that is unknown or repeated."""
    names: list[str] = []
    for i, code in enumerate(codes):
        if code not in NAME_OF:
            expected = " or ".join(_wire_name(c) for c in CODES.values())
            raise KindError(f"{field}[{i}]", f"must be {expected}, got {code}")
        if NAME_OF[code] in names:
            raise KindError(f"{field}[{i}]", f"{_wire_name(code)} is asked for twice")
        names.append(NAME_OF[code])
    return tuple(names) if names else (DEFAULT,)


def to_codes(names: Iterable[str]) -> list[ks.KernelKind]:
    """The wire values of parsed names, in their order."""
    return [CODES[name] for name in names]
