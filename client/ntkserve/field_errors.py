"""The one shape of an error about what a caller sent: (field path, problem) pairs.

Every distribution raises it: the client's tensor codec (`tensor.TensorError`), the engine
(`EngineError`), the server's request checks (`InvalidRequest`, `OverLimit`). The pairs are
data, so code that knows where a field sits (item 3 of a batch, a protocol's own names)
re-homes them with `within` or `renamed` and never parses or edits a message string.

Imports neither grpc nor jax: every distribution depends on ntkserve, the engine without
grpc, the client without jax.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

Violation = tuple[str, str]  # (field path, problem); path "": the request as a whole


class FieldError(ValueError):
    """Problems with fields of what a caller sent; the message is the pairs, "field: problem"
    joined by "; " (the problem alone for path "")."""

    violations: tuple[Violation, ...] = ()

    def __init__(self, field: str, problem: str) -> None:
        super().__init__()
        self._hold(((field, problem),))

    @classmethod
    def of(cls, violations: Sequence[Violation]) -> Self:
        """One error holding several violations (at least one)."""
        error = cls.__new__(cls)
        error._hold(violations)
        return error

    @property
    def field(self) -> str:
        """The first violation's field path."""
        return self.violations[0][0]

    @property
    def problem(self) -> str:
        """The first violation's problem."""
        return self.violations[0][1]

    def within(self, prefix: str) -> Self:
        """The same error, its fields under `prefix`: "x1.shape" within "requests[2]" is
        "requests[2].x1.shape"; a whole-request violation becomes the prefix's own."""
        return self.renamed(lambda field: f"{prefix}.{field}" if field else prefix)

    def renamed(self, path: Callable[[str], str]) -> Self:
        """The same error (same class, same attributes), each field path mapped by `path`."""
        moved = type(self).__new__(type(self))
        moved.__dict__.update(self.__dict__)
        moved._hold([(path(field), problem) for field, problem in self.violations])
        return moved

    def _hold(self, violations: Sequence[Violation]) -> None:
        if not violations:
            raise ValueError("a FieldError needs at least one (field, problem) violation")
        self.violations = tuple(violations)
        self.args = ("; ".join(f"{f}: {p}" if f else p for f, p in self.violations),)

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles keep the pairs (subclasses' constructors take other arguments
        than the message that `args` holds)."""
        return (_rebuilt, (type(self), self.violations), self.__dict__)


def _rebuilt(cls: type[FieldError], violations: tuple[Violation, ...]) -> FieldError:
    return cls.of(violations)
