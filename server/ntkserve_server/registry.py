"""The architecture registry: canonical architectures by (tenant, id), in an embedded SQLite file.

A registration is acknowledged only after its transaction is committed (WAL journal,
synchronous=FULL), so a crash never loses an acknowledged architecture and the file
always opens cleanly. Blocking: call it from a worker thread, not the event loop (except
`known`, which never blocks).

Each tenant has its own registrations: the id is a function of the network alone, so two
tenants registering the same network get the same id, but each holds its own row and
deleting one leaves the other. A server without --auth-tokens keeps everything under
DEFAULT_TENANT, which no token file can name, so rows made before tokens were turned on are
not handed to whichever tenant comes first.

Schema versions (PRAGMA user_version): 1, the first, written before tenants (user_version
still 0: that server never set it; no tenant column, the id alone the key); 2, the current
one. A version 1 file is migrated when it is opened, in one transaction, its rows given to
DEFAULT_TENANT: a crash half way leaves the old table as it was. A file of a later version
(a newer server's) is refused rather than rewritten.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

from ntkserve.v1 import architecture_pb2 as pb


class UnknownArchitecture(LookupError):
    """No such id *for the caller*: also what another tenant's id gets. NOT_FOUND, never
    PERMISSION_DENIED, so that a tenant cannot probe which ids other tenants registered
    (an id is a hash of the network: a denial would tell that someone uses that network)."""

    def __init__(self, architecture_id: str, hint: str = "") -> None:
        super().__init__(f"no architecture with id {architecture_id!r}{hint}")


DEFAULT_TENANT = ""  # the tenant of every call to a server without --auth-tokens
SCHEMA_VERSION = 2
_TABLE = """
CREATE TABLE {name} (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    canonical   BLOB NOT NULL,
    create_time REAL NOT NULL,
    PRIMARY KEY (tenant, id)
)
"""
# Deleting a shared network asks whether any tenant still holds it.
_ID_INDEX = "CREATE INDEX architectures_by_id ON architectures (id)"


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    architecture: pb.Architecture
    create_time: float


class Registry:
    """The registrations, plus the (tenant, id) pairs this process knows to be registered,
    so that the servicer can answer "does this caller hold this id?" on the event loop
    without a thread hop. The pairs are a cache of positive answers only: a pair not in it
    is looked up in the file (so a registration made through another process that shares
    the file is found), and a delete through this process removes its pair at once.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, set[str]] = {}  # tenant -> ids held; changed under the lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        """Brings the file to SCHEMA_VERSION (creating it when new), in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # no other process may write between look and change
        try:  # SQLite's DDL is transactional: the new table, the copy and the drop commit as one
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has registry schema version {version}; this server knows "
                    f"versions up to {SCHEMA_VERSION}: run a newer ntkserve on this data dir"
                )
            columns = [r[1] for r in db.execute("PRAGMA table_info(architectures)")]
            if not columns:
                db.execute(_TABLE.format(name="architectures"))
                db.execute(_ID_INDEX)
            elif "tenant" not in columns:  # version 1: every row goes to the default tenant
                db.execute(_TABLE.format(name="architectures_v2"))
                db.execute(
                    "INSERT INTO architectures_v2 (tenant, id, canonical, create_time) "
                    "SELECT ?, id, canonical, create_time FROM architectures",
                    (DEFAULT_TENANT,),
                )
                db.execute("DROP TABLE architectures")
                db.execute("ALTER TABLE architectures_v2 RENAME TO architectures")
                db.execute(_ID_INDEX)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def known(self, tenant: str, architecture_id: str) -> bool:
        """True if `tenant` is known to hold the id; False means "ask `holds`", not "no".
        Never blocks: safe on the event loop (without the lock: a dict's `get` and a set's
        `in` are atomic under the GIL, and both change only under the lock)."""
        ids = self._known.get(tenant)
        return ids is not None and architecture_id in ids

    def holds(self, tenant: str, architecture_id: str) -> bool:
        """Whether `tenant` registered the id (and has not deleted it)."""
        with self._lock:
            if architecture_id in self._known.get(tenant, ()):
                return True
            row = self._db.execute(
                "SELECT 1 FROM architectures WHERE tenant = ? AND id = ?",
                (tenant, architecture_id),
            ).fetchone()
            if row is not None:
                self._known.setdefault(tenant, set()).add(architecture_id)
            return row is not None

    def put(
        self, tenant: str, architecture_id: str, canonical: pb.Architecture
    ) -> tuple[bool, float]:
        """Stores an architecture for `tenant`; returns (created, create_time). Durable when
        it returns; created is False when this tenant had registered it before."""
        blob = canonical.SerializeToString(deterministic=True)
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO architectures (tenant, id, canonical, create_time) "
                "VALUES (?, ?, ?, ?)",
                (tenant, architecture_id, blob, now),
            )
            self._known.setdefault(tenant, set()).add(architecture_id)
            if cursor.rowcount == 1:
                return True, now
            row = self._db.execute(
                "SELECT create_time FROM architectures WHERE tenant = ? AND id = ?",
                (tenant, architecture_id),
            ).fetchone()
        return False, float(row[0])

    def get(self, tenant: str, architecture_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, canonical, create_time FROM architectures WHERE tenant = ? AND id = ?",
                (tenant, architecture_id),
            ).fetchone()
        return None if row is None else _record(row)

    def list(self, tenant: str) -> list[Record]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, canonical, create_time FROM architectures WHERE tenant = ? "
                "ORDER BY create_time, id",
                (tenant,),
            ).fetchall()
        return [_record(r) for r in rows]

    def delete(self, tenant: str, architecture_id: str) -> bool:
        """Removes the tenant's registration; other tenants' registrations of it stay."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM architectures WHERE tenant = ? AND id = ?", (tenant, architecture_id)
            )
            self._known.get(tenant, set()).discard(architecture_id)
        return cursor.rowcount == 1

    def anyone_holds(self, architecture_id: str) -> bool:
        """Whether any tenant still holds the id (its compiled programs are then kept)."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM architectures WHERE id = ? LIMIT 1", (architecture_id,)
            ).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _record(row: tuple[str, bytes, float]) -> Record:
    return Record(id=row[0], architecture=pb.Architecture.FromString(row[1]), create_time=row[2])
