"""Engine errors. They carry field paths; the servicer turns them into gRPC statuses."""

from __future__ import annotations

from collections.abc import Sequence

from ntkserve.field_errors import FieldError


class EngineError(FieldError):
    """Base of errors caused by what the caller asked for (never by a bug)."""


class ArchitectureError(EngineError):
    """An architecture that cannot be compiled; `violations` are (field path, problem) pairs."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        super().__init__(*violations[0])
        self._hold(violations)


class InputError(EngineError):
    """Inputs that do not fit the architecture (rank, feature shape, dtype)."""
