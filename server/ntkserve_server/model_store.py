"""Fitted models on disk: a SQLite row per (tenant, model id) and a directory of .npy arrays
per model (its training inputs and targets, training kernels, factorization).

Durable the way the registry is: a model is acknowledged only once committed. Its arrays
are written into a staging directory (`staging`), each file fsynced, the directory renamed
into place and its parent fsynced, and only then is its row inserted and committed (WAL,
synchronous=FULL). A crash before the commit leaves a directory without a row, removed when
the store is next opened, never a row without its arrays. Deleting commits the row's
removal first, then removes the directory.

Bounded: `max_bytes` (0: the disk is the limit) caps the bytes all stored models take;
a model past it is `ModelStoreFull` (RESOURCE_EXHAUSTED, with the numbers). Opened at first
use, not at start: a server started on a full disk starts; while its store cannot be opened
there are no models to read and a Fit is ModelStoreFull, until space is freed. Scoped like
architectures: a model is its tenant's; another tenant's id is NOT_FOUND (`UnknownModel`),
never a denial. Blocking: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ntkserve.v1 import model_service_pb2 as ms

from ntkserve_server.requests import OverLimit

Array = np.ndarray[Any, Any]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    record      BLOB NOT NULL,
    bytes       INTEGER NOT NULL,
    create_time REAL NOT NULL,
    PRIMARY KEY (tenant, id)
)
"""
_STAGING_PREFIX = ".staging-"


class UnknownModel(LookupError):
    """No such model *for the caller* (NOT_FOUND): also what another tenant's id gets."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"no model with id {model_id!r}; fit one first (ListModels lists yours)")


class ModelStoreFull(OverLimit):
    """A model the store's byte budget cannot take (RESOURCE_EXHAUSTED)."""


@dataclasses.dataclass(frozen=True)
class StoredModel:
    record: ms.ModelRecord
    directory: Path

    def arrays(self) -> dict[str, Array]:
        """The model's arrays by name, memory-mapped read-only (pages read as used)."""
        return {p.stem: np.load(p, mmap_mode="r") for p in sorted(self.directory.glob("*.npy"))}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """The models of every tenant under `root` (rows in `root/models.sqlite3`)."""

    def __init__(self, root: Path, max_bytes: int = 0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Opened at first use, not here: a server started on a full disk must start (and
        # serve kernels); until the store can be opened, a write is ModelStoreFull.
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The open database, opened now if it was not (under the lock)."""
        if self._connection is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.root / "models.sqlite3", check_same_thread=False, isolation_level=None
                )
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=FULL")
                    db.execute(_SCHEMA)
                except BaseException:
                    db.close()
                    raise
            except (OSError, sqlite3.Error) as e:
                free = shutil.disk_usage(self.root.parent if not self.root.exists() else self.root)
                raise ModelStoreFull(
                    "",
                    f"the model store cannot be opened ({e}; {free.free} bytes free); it "
                    "opens once the operator frees space (no restart needed)",
                ) from e
            self._connection = db
            self._remove_uncommitted()
        return self._connection

    def _exists(self) -> bool:
        return self._connection is not None or (self.root / "models.sqlite3").exists()

    def _remove_uncommitted(self) -> None:
        """Directories a crash left: staging ones, and models renamed into place whose row was
        never committed."""
        committed = {row[0] for row in self._db.execute("SELECT id FROM models")}
        for path in self.root.iterdir():
            if path.is_dir() and path.name not in committed:
                shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh directory to write a model's arrays into (removed unless committed)."""
        with self._lock:
            self._db  # noqa: B018 - opened (and cleaned) before anything is staged
        path = self.root / f"{_STAGING_PREFIX}{uuid.uuid4().hex}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def used_bytes(self) -> int:
        with self._lock:
            if not self._exists():
                return 0
            return int(self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM models").fetchone()[0])

    def check_room(self, nbytes: int) -> None:
        """ModelStoreFull if `nbytes` more would pass the budget (before any work is done)."""
        used = self.used_bytes()
        if self.max_bytes and used + nbytes > self.max_bytes:
            raise ModelStoreFull(
                "",
                f"the model would take {nbytes} bytes and stored models take {used}, over this "
                f"server's {self.max_bytes} bytes for models (--max-model-mb); delete some "
                "(DeleteModel) first",
            )

    def commit(
        self, tenant: str, model_id: str, record: ms.ModelRecord, staged: Path
    ) -> ms.ModelRecord:
        """Moves `staged` into place and commits the model's row; durable when it returns. A
        model the tenant had already stored is returned as it was (its arrays are the same:
        the id is content addressed)."""
        with self._lock:
            found = self._get(tenant, model_id)
            if found is not None:
                return found.record
            nbytes = sum(p.stat().st_size for p in staged.iterdir())
            for path in staged.iterdir():
                _fsync(path)
            _fsync(staged)
            final = self.root / model_id
            shutil.rmtree(final, ignore_errors=True)  # an uncommitted earlier attempt's
            staged.rename(final)
            _fsync(self.root)
            record.create_time = time.time()
            record.stored_bytes = nbytes
            self._db.execute(
                "INSERT INTO models (tenant, id, record, bytes, create_time) "
                "VALUES (?, ?, ?, ?, ?)",
                (tenant, model_id, record.SerializeToString(), nbytes, record.create_time),
            )
        return record

    def _get(self, tenant: str, model_id: str) -> StoredModel | None:
        row = self._db.execute(
            "SELECT record FROM models WHERE tenant = ? AND id = ?", (tenant, model_id)
        ).fetchone()
        if row is None:
            return None
        return StoredModel(ms.ModelRecord.FromString(row[0]), self.root / model_id)

    def find(self, tenant: str, model_id: str) -> StoredModel | None:
        with self._lock:
            return self._get(tenant, model_id) if self._exists() else None

    def get(self, tenant: str, model_id: str) -> StoredModel:
        """The tenant's model; UnknownModel if it has none of that id."""
        with self._lock:
            found = self._get(tenant, model_id) if self._exists() else None
        if found is None:
            raise UnknownModel(model_id)
        return found

    def list(self, tenant: str) -> list[ms.ModelRecord]:
        with self._lock:
            if not self._exists():
                return []
            rows = self._db.execute(
                "SELECT record FROM models WHERE tenant = ? ORDER BY create_time, id", (tenant,)
            ).fetchall()
        return [ms.ModelRecord.FromString(r[0]) for r in rows]

    def delete(self, tenant: str, model_id: str) -> None:
        """Removes the tenant's model (UnknownModel if none): its row, then its arrays."""
        with self._lock:
            if not self._exists():
                raise UnknownModel(model_id)
            cursor = self._db.execute(
                "DELETE FROM models WHERE tenant = ? AND id = ?", (tenant, model_id)
            )
            if cursor.rowcount != 1:
                raise UnknownModel(model_id)
            shutil.rmtree(self.root / model_id, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
