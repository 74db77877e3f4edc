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
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.monitoring
from jax.experimental import serialize_executable
from ntkserve.field_errors import FieldError

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
# A worker loads jax before its first compile: seconds, even on a busy machine; not counted
# against --compile-seconds.
START_SECONDS = 120
# What a worker's reply holds after the executable (see `_serve`): part of the disk cache's
# key, so a reply of an older layout is compiled again rather than misread.
_REPLY_LAYOUT = ("ops", "memory_bytes", "flops", "bytes_accessed", "compile_seconds")
_OUT_OF_MEMORY = 70  # a child's exit status after a MemoryError (its state is not trusted)


def _address_space() -> int:
    """This process's address space now (Linux; 0 where /proc does not say)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cap_address_space(memory_bytes: int) -> None:
    """Caps the address space at what it is now plus `memory_bytes`: what the compiles may
    add to a started worker, whatever its backend reserved (a GPU runtime reserves far more
    address space than memory)."""
    memory_bytes += _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))


def warm_up() -> None:
    """Loads jax's backend and the compiler's libraries and threads: a worker does this
    before its address space is capped, so the cap bounds its compiles only."""
    jax.jit(lambda x: x + 1).lower(0.0).compile()


def _portable(error: Exception) -> tuple[str, Any]:
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
    settings, cap = conn.recv()
    jax.config.update("jax_enable_compilation_cache", False)  # type: ignore[no-untyped-call]
    for name, value in settings.items():
        jax.config.update(name, value)  # type: ignore[no-untyped-call]
    warm_up()
    if cap:
        _cap_address_space(cap)
    conn.send("ready")
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
            os._exit(_OUT_OF_MEMORY)
        except Exception as e:
            reply = _portable(e)
        conn.send(reply)


def _cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "it did not exit"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    if exitcode == _OUT_OF_MEMORY:
        return "out of memory"
    return f"exit status {exitcode}"


class _Worker:
    """One child process and the server's end of its socket. Started as a fresh interpreter
    (`python -m ntkserve_server.compile_workers FD`: spawn, without multiprocessing's
    re-import of the server's main module), the server's environment inherited."""

    def __init__(self, settings: dict[str, Any], cap: int) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.conn = multiprocessing.connection.Connection(ours.detach())
        self.conn.send((settings, cap))
        self.ready = False  # its "ready" (jax loaded) received: --compile-seconds count after

    def exitcode(self) -> int | None:
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def ask(self, request: Any, seconds: float) -> Any:
        """The child's reply; `_Lost` with the cause when it dies or runs past `seconds`."""
        try:
            if not self.ready:
                if not self.conn.poll(START_SECONDS):
                    self.stop()
                    raise _Lost(f"it did not start in {START_SECONDS} s")
                self.ready = self.conn.recv() == "ready"
            self.conn.send(request)
            if self.conn.poll(seconds):
                return self.conn.recv()
        except (EOFError, OSError):
            raise _Lost(_cause(self.exitcode())) from None
        self.stop()
        raise _Lost(f"it took longer than {seconds:g} s (--compile-seconds) and was stopped")

    def stop(self) -> None:
        self.process.kill()
        self.exitcode()
        self.conn.close()


class _Lost(Exception):
    """A compile worker died or was stopped during a compile."""


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
        self.lost = 0  # workers that died or were stopped during a compile
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        self._unstarted = count  # started when a compile finds no idle worker
        self._lock = threading.Lock()

    def _take(self) -> _Worker:
        """An idle worker; else a new one while fewer than `count` run; else the next idle."""
        with self._lock:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                if self._unstarted:
                    self._unstarted -= 1
                    return self._start()
        return self._idle.get()

    def _start(self) -> _Worker:
        settings = {name: getattr(jax.config, name) for name in JAX_SETTINGS}
        worker = _Worker(settings, self.memory_bytes)
        self._all.add(worker)
        return worker

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
        worker = self._take()
        try:
            kind, reply = worker.ask((recipe, max_ops), self.seconds)
        except _Lost as lost:
            self.lost += 1
            worker.stop()
            self._all.discard(worker)
            self._idle.put(self._start())  # the next compile finds it started
            raise OverLimit(
                "",
                f"compiling this program took the compile worker down ({lost}; a compile may "
                f"use {self.memory_bytes / MiB:.0f} MiB of address space, --compile-memory-mb, "
                f"and {self.seconds:g} s per compile, --compile-seconds); simplify the "
                "network or send fewer inputs per call (or stream the kernel)",
            ) from None
        self._idle.put(worker)
        if kind == "field":
            cls, violations = reply
            raise cls.of(violations)
        if kind == "error":
            raise reply
        return reply

    def close(self) -> None:
        """Stops every worker (the server is shutting down)."""
        for worker in list(self._all):
            worker.stop()
        self._all.clear()


if __name__ == "__main__":
    _serve(multiprocessing.connection.Connection(int(sys.argv[1])))
