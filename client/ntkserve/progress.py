"""The progress bar of a streamed kernel: tiles done, their rate and the time left (tqdm).

`progress=None` shows the bar only where someone can watch it (stderr is a terminal) and
only for jobs of more than one tile; True always shows it, False never.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from tqdm import tqdm


def wanted(progress: bool | None, tiles: int) -> bool:
    if progress is None:
        return tiles > 1 and sys.stderr.isatty()
    return bool(progress)


class TileProgress:
    """Counts finished tiles; safe to update from several threads."""

    def __init__(self, tiles: int, progress: bool | None, desc: str = "kernel tiles") -> None:
        self._lock = threading.Lock()
        self._bar: Any = None  # a tqdm bar
        if wanted(progress, tiles):
            self._bar = tqdm(total=tiles, desc=desc, unit="tile", file=sys.stderr, leave=True)

    def done(self, count: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.close()

    def __enter__(self) -> TileProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
