"""The request-id rule, one for client and server: the metadata key that carries an id, what
a valid id is, and how one is made when the caller sends none.

Ids go into the server's log lines verbatim, so a valid one is printable with no spaces or
quotes: it cannot forge a log field or a line. Imports neither grpc nor jax.
"""

from __future__ import annotations

import re
import uuid
from typing import TypeGuard

KEY = "x-request-id"
RULE = "1 to 128 characters of letters, digits and . _ : / + = -"
_VALID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def is_valid(value: object) -> TypeGuard[str]:
    """Whether `value` may be sent and logged as a request id (see RULE)."""
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def new() -> str:
    """A fresh id for a call that came without one: 16 random hex digits."""
    return uuid.uuid4().hex[:16]
