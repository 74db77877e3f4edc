"""Compiles: programs (unary and tile) compiled in engine processes whose death is contained.

A compile that dies (XLA aborting on an allocation it cannot make, the OS killing the
process, a compile that never ends) must not take the server down (issue 17). Each compile
is a request to an engine process (`engine_processes`: a child process with the server's
environment and jax settings, its address space capped): it builds the recipe
(`program_recipes.build`, the code the server would run in-process) and replies with the
serialized executable and its costs. Here the reply is kept on disk (`_Disk`) and placed
where the program will run: as an engine process's `RemoteExecutable` (unary programs and
streamed tiles alike, so a computation that dies is contained too), or loaded in this
process (`engine_processes.loaded`, for tests comparing the two) — the same compiled
program, bit for bit.

A compile that dies, or takes longer than `seconds` (then its process is killed), costs that
request alone: it gets `OverLimit` (RESOURCE_EXHAUSTED) saying so, and a fresh process takes
the dead one's place. Blocking: call `build` from a worker thread (unary compiles: the
compile executor's, at most --compile-workers at a time; tile programs: the device work's).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.monitoring
import ntkserve_engine

import ntkserve_server
from ntkserve_server import child_processes
from ntkserve_server.engine_processes import REPLY_LAYOUT, EngineProcesses, raised
from ntkserve_server.program_recipes import Program, Recipe, device_of
from ntkserve_server.requests import OverLimit

MiB = 1 << 20
# jax's monitoring event for a compile an engine process made (jax's own event fires in that
# process, which the server's listeners do not see): its duration, in the server's process.
WORKER_COMPILE_EVENT = "/ntkserve/compile_workers/backend_compile_duration"


@functools.cache
def _code_digest() -> str:
    """A digest of the engine's and the server's source: a program is built by that code, so
    a reply written before an upgrade (or, in a checkout, an edit) is not found after it."""
    digest = hashlib.sha256()
    for package in (ntkserve_engine, ntkserve_server):
        root = Path(package.__path__[0])
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _Disk:
    """Compile replies kept as files in jax's compilation cache directory (none when the
    server has none: tenants with isolated caches share nothing), by a hash of the recipe,
    the ops limit it was built under, the reply's layout, jax's version, the devices,
    XLA_FLAGS and the code that builds programs (a reply written by another version is not
    found, never misread; servers of one version may share the directory)."""

    def __init__(self) -> None:
        directory = getattr(jax.config, "jax_compilation_cache_dir", None)
        self.directory = None if directory is None else Path(directory)
        devices = [str(d) for d in jax.local_devices()]
        self._context = repr(
            (
                REPLY_LAYOUT,
                jax.__version__,
                devices,
                os.environ.get("XLA_FLAGS"),
                _code_digest(),
            )
        )

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


class CompileWorkers:
    """Compiles in `engines`, each allowed `seconds`."""

    def __init__(self, engines: EngineProcesses, seconds: float) -> None:
        self.engines = engines
        self.seconds = seconds

    def build(self, recipe: Recipe, max_ops: int, place: Callable[[bytes, Any], Any]) -> Program:
        """The recipe's program, built in an engine process (blocking) and placed where it
        will run by `place`: (serialized executable, device) -> what to call."""
        disk = _Disk()
        reply = disk.get(recipe, max_ops)
        compiled = reply is None  # else loaded from the disk: nothing compiled now
        if compiled:
            reply = self._ask(recipe, max_ops)
            disk.put(recipe, max_ops, reply)
        blob, *costs = reply
        made = dict(zip(REPLY_LAYOUT, costs, strict=True))
        if compiled:
            jax.monitoring.record_event_duration_secs(WORKER_COMPILE_EVENT, made["compile_seconds"])
        else:
            made["compile_seconds"] = 0.0  # loaded from the disk: nothing compiled now
        return Program(place(blob, device_of(recipe)), **made)

    def _ask(self, recipe: Recipe, max_ops: int) -> Any:
        """An engine process's reply: the serialized executable and its costs
        (`REPLY_LAYOUT`), or its error raised."""
        try:
            kind, reply = self.engines.ask(("compile", recipe, max_ops), self.seconds)
        except child_processes.Lost as lost:
            raise OverLimit(
                "",
                f"compiling this program took its engine process down ({lost}; a compile "
                f"may use {self.engines.memory_bytes / MiB:.0f} MiB of address space, "
                f"--compile-memory-mb, and {self.seconds:g} s, --compile-seconds); simplify "
                "the network or send fewer inputs per call (or stream the kernel)",
            ) from None
        return raised(kind, reply)
