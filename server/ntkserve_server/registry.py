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
(a newer server's) is refused rather than rewritten. A current file is only read when opened
(nothing written), so a server starts on a full disk.

Full (issue 17, finding 9): a registration the file cannot take (the disk is full, or the file
is at `Quotas.max_file_bytes`, SQLite's `max_page_count`) or that would put its tenant over its
quota (count, or bytes of canonical architectures) is `RegistryFull`: RESOURCE_EXHAUSTED with
the numbers. A file that cannot be opened for writing (a full disk cannot even hold WAL's
shared-memory index) is opened read-only: lookups work, registrations and deletes are
`RegistryFull` saying why, and each of them first tries to open the file for writing again,
so freeing space is enough (no restart).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ntkserve.v1 import architecture_pb2 as pb

from ntkserve_server.requests import OverLimit

log = logging.getLogger("ntkserve")


class UnknownArchitecture(LookupError):
    """No such id *for the caller*: also what another tenant's id gets. NOT_FOUND, never
    PERMISSION_DENIED, so that a tenant cannot probe which ids other tenants registered
    (an id is a hash of the network: a denial would tell that someone uses that network)."""

    def __init__(self, architecture_id: str, hint: str = "") -> None:
        super().__init__(f"no architecture with id {architecture_id!r}{hint}")


class RegistryFull(OverLimit):
    """A registration (or delete) the registry cannot store: its disk or its size cap is full,
    it was opened read-only, or the tenant is at its quota (RESOURCE_EXHAUSTED)."""


@dataclasses.dataclass(frozen=True)
class Quotas:
    """The registry's bounds (0: none): its file's size, and per tenant the architectures
    kept and the bytes of their canonical form."""

    max_file_bytes: int = 0
    max_count_per_tenant: int = 0
    max_bytes_per_tenant: int = 0


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

    def __init__(self, path: Path, quotas: Quotas = Quotas()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.quotas = quotas
        self._lock = threading.Lock()
        self._known: dict[str, set[str]] = {}  # tenant -> ids held; changed under the lock
        self.read_only: str | None = None  # why the file is open read-only (None: writable)
        try:
            self._db = self._open_writable()
        except sqlite3.OperationalError as e:
            if not path.exists():
                raise
            self._db = self._open_read_only(e)

    def _open_writable(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file: set once, then only read
            db.execute("PRAGMA synchronous=FULL")
            if self.quotas.max_file_bytes:
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count = {max(1, self.quotas.max_file_bytes // page)}")
            _migrate(db, self.path)
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self, error: sqlite3.OperationalError) -> sqlite3.Connection:
        """The file for reading only, when it cannot be opened for writing (`error`): as a
        reader among writers, or where even that needs space (WAL's shared-memory index) as
        an immutable file, but only with no write-ahead log to read (its frames, acknowledged
        registrations, would be missed). Raises `error` where neither serves."""
        uri = self.path.resolve().as_uri() + "?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        attempts = [uri]
        if not wal.exists() or wal.stat().st_size == 0:
            attempts.append(uri + "&immutable=1")
        for attempt in attempts:
            db = sqlite3.connect(attempt, uri=True, check_same_thread=False, isolation_level=None)
            try:
                if _schema_current(db, self.path):
                    free = shutil.disk_usage(self.path.parent).free
                    self.read_only = (
                        f"it could not be opened for writing ({error}; {free} bytes free on "
                        f"{self.path.parent})"
                    )
                    log.warning("registry %s is read-only: %s", self.path, self.read_only)
                    return db
            except sqlite3.OperationalError:
                pass
            db.close()
        raise error

    def _reopened_writable(self) -> bool:
        """Whether a read-only registry could be opened for writing now (space was freed):
        then the writable connection replaces the read-only one. Tried at each write, under
        the lock, so no timer is needed: where the disk is still full the open fails."""
        try:
            db = self._open_writable()
        except sqlite3.OperationalError as e:
            log.debug("registry %s is still read-only: %s", self.path, e)
            return False
        self._db.close()
        self._db, self.read_only = db, None
        log.warning("registry %s is writable again", self.path)
        return True

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
        it returns (committed); created is False when this tenant had registered it before.
        RegistryFull when it cannot be stored or the tenant is at its quota."""
        blob = canonical.SerializeToString(deterministic=True)
        now = time.time()
        with self._lock:
            row = self._create_time(tenant, architecture_id)  # held: nothing to write
            if row is None:
                with self._writing("architecture"):
                    row = self._create_time(tenant, architecture_id)  # another process's?
                    if row is None:
                        self._check_quota(tenant, len(blob))
                        self._db.execute(
                            "INSERT INTO architectures (tenant, id, canonical, create_time) "
                            "VALUES (?, ?, ?, ?)",
                            (tenant, architecture_id, blob, now),
                        )
            self._known.setdefault(tenant, set()).add(architecture_id)
        return (True, now) if row is None else (False, float(row[0]))

    def _create_time(self, tenant: str, architecture_id: str) -> tuple[float] | None:
        row: tuple[float] | None = self._db.execute(
            "SELECT create_time FROM architectures WHERE tenant = ? AND id = ?",
            (tenant, architecture_id),
        ).fetchone()
        return row

    @contextlib.contextmanager
    def _writing(self, field: str) -> Iterator[None]:
        """One write transaction, committed at its end (rolled back on an error); a full disk
        or file, or a read-only registry, is RegistryFull naming `field`."""
        if self.read_only is not None and not self._reopened_writable():
            raise RegistryFull(
                field,
                f"the registry is read-only: {self.read_only}; it serves the architectures it "
                "has, and stores new ones once the operator frees space (no restart needed)",
            )
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            if not self._is_full(e):
                raise
            raise RegistryFull(
                field, f"{self._full()}; delete some (DeleteArchitecture) or ask the operator"
            ) from e

    def _is_full(self, error: sqlite3.OperationalError) -> bool:
        """SQLITE_FULL, or an I/O error with the disk full (growing WAL's shared-memory index
        on a full disk is SQLITE_IOERR_SHMSIZE, not SQLITE_FULL)."""
        if error.sqlite_errorcode == sqlite3.SQLITE_FULL:
            return True
        io_error = error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_IOERR
        return io_error and shutil.disk_usage(self.path.parent).free < 1 << 16

    def _full(self) -> str:
        """Why a write found the registry full: its size cap (SQLite's max_page_count, what
        a disk with room left means), or its disk."""
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        size = page * self._db.execute("PRAGMA page_count").fetchone()[0]
        free = shutil.disk_usage(self.path.parent).free
        cap = self.quotas.max_file_bytes
        if cap and free >= 1 << 20:
            return (
                f"the registry is full: it holds {size} bytes, at its cap of {cap} bytes "
                "(--max-registry-mb)"
            )
        return f"the registry's disk is full ({free} bytes free on {self.path.parent})"

    def _check_quota(self, tenant: str, size: int) -> None:
        count, used = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(canonical)), 0) FROM architectures "
            "WHERE tenant = ?",
            (tenant,),
        ).fetchone()
        most, most_bytes = self.quotas.max_count_per_tenant, self.quotas.max_bytes_per_tenant
        if most and count + 1 > most:
            raise RegistryFull(
                "architecture",
                f"your tenant keeps {count} architectures registered, the most one tenant may "
                f"keep (--max-architectures-per-tenant {most}); delete some "
                "(DeleteArchitecture) first",
            )
        if most_bytes and used + size > most_bytes:
            raise RegistryFull(
                "architecture",
                f"your tenant's architectures take {used} bytes and this one {size} more, over "
                f"the {most_bytes} bytes one tenant may keep (--max-architecture-mb-per-tenant); "
                "delete some (DeleteArchitecture) first",
            )

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
            with self._writing("architecture_id"):
                cursor = self._db.execute(
                    "DELETE FROM architectures WHERE tenant = ? AND id = ?",
                    (tenant, architecture_id),
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


def _schema_current(db: sqlite3.Connection, path: Path) -> bool:
    """Whether the file is at SCHEMA_VERSION (reading only); refuses a newer server's file."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has registry schema version {version}; this server knows "
            f"versions up to {SCHEMA_VERSION}: run a newer ntkserve on this data dir"
        )
    columns = [r[1] for r in db.execute("PRAGMA table_info(architectures)")]
    return bool(version == SCHEMA_VERSION and "tenant" in columns)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Brings the file to SCHEMA_VERSION (creating it when new), in one transaction; writes
    nothing when it is current (a full disk must not stop a server from starting)."""
    if _schema_current(db, path):
        return
    db.execute("BEGIN IMMEDIATE")  # no other process may write between look and change
    try:  # SQLite's DDL is transactional: the new table, the copy and the drop commit as one
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
        if db.in_transaction:  # a failed COMMIT may have rolled back already
            db.execute("ROLLBACK")
        raise


def _record(row: tuple[str, bytes, float]) -> Record:
    return Record(id=row[0], architecture=pb.Architecture.FromString(row[1]), create_time=row[2])
