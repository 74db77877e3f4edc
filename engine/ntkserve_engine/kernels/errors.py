"""Engine errors. They carry field paths; the servicer turns them into gRPC statuses."""

from __future__ import annotations

from collections.abc import Sequence


class EngineError(ValueError):
    """Base of errors caused by what the caller asked for (never by a bug)."""

    violations: tuple[tuple[str, str], ...] = ()


class ArchitectureError(EngineError):
    """An architecture that cannot be compiled; `violations` are (field path, problem) pairs."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{path}: {problem}" for path, problem in self.violations))


class InputError(EngineError):
    """Inputs that do not fit the architecture (rank, feature shape, dtype)."""

    def __init__(self, field: str, problem: str) -> None:
        self.violations = ((field, problem),)
        super().__init__(f"{field}: {problem}")
