"""Compile workers: programs (unary and tile) compiled in child processes whose death is contained.

A compile that dies (XLA aborting on an allocation it cannot make, the OS killing the
process, a compile that never ends) must not take the server down (issue 17). Each worker
is a child process started as a fresh interpreter (jax is multithreaded: no fork of the
server), with the server's environment (XLA_FLAGS, so the same devices) and jax settings
(x64; not the on-disk cache: see `JAX_SETTINGS`), its address space capped (RLIMIT_AS:
`memory_bytes` more than it holds once jax is loaded). It receives a
`program_recipes.Recipe`, builds it (`program_recipes.build`, the code the server would run
in-process), serializes the executable (`jax.experimental.serialize_executable`) and
replies with it and its costs; the server loads it (`deserialize_and_load`): the same
compiled program, bit for bit.

A worker that dies mid-compile, or takes longer than `seconds` (then it is killed), costs
that request alone: it gets `OverLimit` (RESOURCE_EXHAUSTED) saying so, the worker is
replaced by a fresh one, and queued compiles go to the others. A worker starts when a
compile finds none idle (a server that compiles nothing starts no process; one that compiles
one program at a time, one).
Blocking: call `build` from a worker thread (unary compiles: the compile executor's, at most
`count` at a time; tile programs: the device work's); a caller past `count` waits for an
idle worker.
"""

from __future__ import annotations

import hashlib
import multiprocessing.connection
import os
import pickle
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.monitoring
from jax.experimental import serialize_executable
from ntkserve.field_errors import FieldError

from ntkserve_server import child_processes
from ntkserve_server.program_recipes import Program, Recipe, build, device_of
from ntkserve_server.requests import OverLimit

MiB = 1 << 20
# What a child copies from the server's jax config before it compiles anything. Not the
# on-disk compilation cache: a worker that used it (jax 0.10.2, CPU) sent back executables
# that failed when run in the server ("NOT_FOUND: Function dot_general.1_kernel not found";
# tests/server/test_hostile_cost.py's four concurrent compiles, 3 of 4 calls), so workers
# compile without it; the server keeps their replies in that directory instead (`_Disk`):
# a restarted server loads what its workers compiled before.
JAX_SETTINGS = ("jax_enable_x64",)
# jax's monitoring event for a compile a worker made (jax's own event fires in the worker's
# process, which the server's listeners do not see): its duration, in the server's process.
WORKER_COMPILE_EVENT = "/ntkserve/compile_workers/backend_compile_duration"
# What a worker's reply holds after the executable (see `_serve`): part of the disk cache's
# key, so a reply of an older layout is compiled again rather than misread.
_REPLY_LAYOUT = ("ops", "memory_bytes", "flops", "bytes_accessed", "compile_seconds")


def portable(error: Exception) -> tuple[str, Any]:
    """An error as it crosses back to the server (FieldErrors do not pickle by their args)."""
    if isinstance(error, FieldError):
        return ("field", (type(error), error.violations))
    try:
        pickle.dumps(error)
        return ("error", error)
    except Exception:
        return ("error", RuntimeError(f"{type(error).__name__}: {error}"))


def _serve(conn: multiprocessing.connection.Connection) -> None:
    """A compile worker's life (child process): its settings, then recipes in, executables
    or errors out."""
    jax.config.update("jax_enable_compilation_cache", False)  # type: ignore[no-untyped-call]
    child_processes.handshake(conn)
    while True:
        try:
            recipe, max_ops = conn.recv()
        except EOFError:  # the server is gone
            return
        try:
            built = build(recipe, max_ops)
            blob = pickle.dumps(serialize_executable.serialize(built.executable))
            costs = tuple(getattr(built, field) for field in _REPLY_LAYOUT)
            reply: Any = ("ok", (blob, *costs))
        except MemoryError:
            traceback.print_exc()
            os._exit(child_processes.OUT_OF_MEMORY)
        except Exception as e:
            reply = portable(e)
        conn.send(reply)


class _Disk:
    """Worker replies kept as files in jax's compilation cache directory (none when the
    server has none: tenants with isolated caches share nothing), by a hash of the recipe,
    the ops limit it was built under, the reply's layout, jax's version, the devices and
    XLA_FLAGS (a reply written by another version is not found, never misread)."""

    def __init__(self) -> None:
        directory = getattr(jax.config, "jax_compilation_cache_dir", None)
        self.directory = None if directory is None else Path(directory)
        devices = [str(d) for d in jax.local_devices()]
        self._context = repr((_REPLY_LAYOUT, jax.__version__, devices, os.environ.get("XLA_FLAGS")))

    def _path(self, recipe: Recipe, max_ops: int) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(pickle.dumps((recipe, max_ops, self._context))).hexdigest()
        return self.directory / f"ntkserve-program-{key}"

    def get(self, recipe: Recipe, max_ops: int) -> Any:
        path = self._path(recipe, max_ops)
        try:
            return None if path is None else pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            return None

    def put(self, recipe: Recipe, max_ops: int, reply: Any) -> None:
        path = self._path(recipe, max_ops)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(pickle.dumps(reply))
            partial.replace(path)
        except OSError:
            pass  # a full disk costs the next start a compile, nothing else


def _loaded(blob: bytes, device: Any) -> Any:
    """The executable, loaded for the device its program runs on (where the worker compiled
    it): left to itself, jax would load it for every local device, and a one-device program
    then refuses its arguments on a server with several."""
    serialized, in_tree, out_tree = pickle.loads(blob)
    return serialize_executable.deserialize_and_load(
        serialized, in_tree, out_tree, execution_devices=[device]
    )


class CompileWorkers:
    """`count` compile worker processes, each capped at `memory_bytes` of address space more
    than a started worker holds (0: the server's own cap) and `seconds` per compile."""

    def __init__(self, count: int, memory_bytes: int, seconds: float) -> None:
        self.memory_bytes = memory_bytes
        self.seconds = seconds
        self._pool = child_processes.Pool(count, self._start)

    @property
    def lost(self) -> int:
        """Workers that died or were stopped during a compile."""
        return self._pool.lost

    def _start(self) -> child_processes.Child:
        settings = {name: getattr(jax.config, name) for name in JAX_SETTINGS}
        return child_processes.Child(__name__, settings, self.memory_bytes)

    def build(self, recipe: Recipe, max_ops: int) -> Program:
        """The recipe's program, built in a worker and loaded here (blocking)."""
        disk = _Disk()
        reply = disk.get(recipe, max_ops)
        compiled = reply is None  # else loaded from the disk: nothing compiled now
        if compiled:
            reply = self._ask(recipe, max_ops)
            disk.put(recipe, max_ops, reply)
        blob, *costs = reply
        made = dict(zip(_REPLY_LAYOUT, costs, strict=True))
        if compiled:
            jax.monitoring.record_event_duration_secs(WORKER_COMPILE_EVENT, made["compile_seconds"])
        else:
            made["compile_seconds"] = 0.0  # loaded from the disk: nothing compiled now
        return Program(_loaded(blob, device_of(recipe)), **made)

    def _ask(self, recipe: Recipe, max_ops: int) -> Any:
        """A worker's reply: the serialized executable and its costs (`_REPLY_LAYOUT`), or
        its error raised."""
        worker = self._pool.take()
        try:
            kind, reply = worker.ask((recipe, max_ops), self.seconds)
        except child_processes.Lost as lost:
            self._pool.replace(worker)
            raise OverLimit(
                "",
                f"compiling this program took the compile worker down ({lost}; a compile may "
                f"use {self.memory_bytes / MiB:.0f} MiB of address space, --compile-memory-mb, "
                f"and {self.seconds:g} s per compile, --compile-seconds); simplify the "
                "network or send fewer inputs per call (or stream the kernel)",
            ) from None
        self._pool.give_back(worker)
        if kind == "field":
            cls, violations = reply
            raise cls.of(violations)
        if kind == "error":
            raise reply
        return reply

    def close(self) -> None:
        """Stops every worker (the server is shutting down)."""
        self._pool.close()


if __name__ == "__main__":
    _serve(multiprocessing.connection.Connection(int(sys.argv[1])))
