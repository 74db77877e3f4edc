"""The architecture registry: canonical architectures by id, in an embedded SQLite file.

A registration is acknowledged only after its transaction is committed (WAL journal,
synchronous=FULL), so a crash never loses an acknowledged architecture and the file
always opens cleanly. Blocking: call it from a worker thread, not the event loop.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

from ntkserve.v1 import architecture_pb2 as pb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS architectures (
    id          TEXT PRIMARY KEY,
    canonical   BLOB NOT NULL,
    create_time REAL NOT NULL
)
"""


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    architecture: pb.Architecture
    create_time: float


class Registry:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def put(self, architecture_id: str, canonical: pb.Architecture) -> tuple[bool, float]:
        """Stores an architecture; returns (created, create_time). Durable when it returns."""
        blob = canonical.SerializeToString(deterministic=True)
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO architectures (id, canonical, create_time) VALUES (?, ?, ?)",
                (architecture_id, blob, now),
            )
            if cursor.rowcount == 1:
                return True, now
            row = self._db.execute(
                "SELECT create_time FROM architectures WHERE id = ?", (architecture_id,)
            ).fetchone()
        return False, float(row[0])

    def get(self, architecture_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, canonical, create_time FROM architectures WHERE id = ?",
                (architecture_id,),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, canonical, create_time FROM architectures ORDER BY create_time, id"
            ).fetchall()
        return [_record(r) for r in rows]

    def delete(self, architecture_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM architectures WHERE id = ?", (architecture_id,))
        return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple[str, bytes, float]) -> Record:
    return Record(id=row[0], architecture=pb.Architecture.FromString(row[1]), create_time=row[2])
