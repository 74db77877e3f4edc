"""Engine processes: where the server's programs are compiled and run (unary calls and
streamed tiles), so that a compile or a computation that dies costs its request alone
(issue 17).

Admission estimates a program's size, memory and time before it is compiled or run
(`unary_programs`), but an estimate can miss: XLA aborting on an allocation, the OS refusing
one, the kernel's out-of-memory killer, a compile that never ends. In the server any of these
would end every tenant's calls; here it ends one engine process (`child_processes.Child`: a
fresh interpreter, its address space capped at `memory_bytes` more than it holds once jax is
loaded, first in line for the OOM killer), the request gets `child_processes.Lost` with the
cause, and a fresh process takes its place.

An engine process answers one request at a time:
- ("compile", recipe, max_ops): builds the recipe (`program_recipes.build`, the code the
  server would run in-process) and replies with the serialized executable
  (`jax.experimental.serialize_executable`) and its costs (`REPLY_LAYOUT`);
- ("load", key, blob, device id) and ("run", key, args, kwargs): keeps a serialized
  executable under `key` and runs it on the arguments sent (those of the jitted function it
  was compiled from), replying with the same structure of numpy arrays; a key it does not
  hold (never loaded, or dropped: it keeps `KEEP_LOADED`) is answered "unknown", and the
  server sends it.
The pool (`EngineProcesses`) starts a process when a request finds none idle, and keeps one
started spare while fewer than `count` run, so a request that finds the others busy does not
wait for jax to load. Programs run here as `RemoteExecutable`s, one per compiled program;
what a caller can do when its process dies differs (`UNARY_ADVICE`, `TILE_ADVICE`). A tile's
inputs and results cross the process boundary each time: a streamed 10,000^2 NTK in
1,024-tiles took 2.40 s this way against 2.57 s computed in the server
(`python -m benchmarks.overhead`).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing.connection
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import serialize_executable

from ntkserve_server import child_processes
from ntkserve_server.program_recipes import Recipe, build
from ntkserve_server.requests import OverLimit
from ntkserve_server.zygote import Zygote

# What the server's jax config a child copies before it compiles anything. Not the on-disk
# compilation cache: a child that used it (jax 0.10.2, CPU) sent back executables that failed
# when run in the server ("NOT_FOUND: Function dot_general.1_kernel not found";
# tests/server/test_hostile_cost.py's four concurrent compiles, 3 of 4 calls), so children
# compile without it; the server keeps their replies in that directory instead
# (`compile_workers`): a restarted server loads what was compiled before.
JAX_SETTINGS = ("jax_enable_x64",)
# What a compile's reply holds after the executable: part of the disk cache's key
# (`compile_workers`), so a reply of an older layout is compiled again rather than misread.
REPLY_LAYOUT = ("ops", "memory_bytes", "flops", "bytes_accessed", "compile_seconds")
# Executables an engine process keeps loaded (least recently run dropped first; one dropped
# is sent again when next run), so a long-lived process does not grow with every program.
KEEP_LOADED = 256
PROCESS_NAME = "ntkserve-engine"  # as `ps -o comm` shows an engine process
Reply = tuple[str, Any]  # ("ok", result), ("unknown", None), or an error (`raised`)


def _compiled(recipe: Recipe, max_ops: int) -> tuple[Any, ...]:
    built = build(recipe, max_ops)
    blob = pickle.dumps(serialize_executable.serialize(built.executable))
    return (blob, *(getattr(built, field) for field in REPLY_LAYOUT))


def loaded(blob: bytes, device: Any) -> Any:
    """A compile's serialized executable, loaded for the device its program runs on (where
    it was compiled): left to itself, jax would load it for every local device, and a
    one-device program then refuses its arguments on a host with several."""
    serialized, in_tree, out_tree = pickle.loads(blob)
    return serialize_executable.deserialize_and_load(
        serialized, in_tree, out_tree, execution_devices=[device]
    )


def _device(device_id: int) -> Any:
    return next(d for d in jax.local_devices() if d.id == device_id)


def _answer(request: tuple[Any, ...], held: collections.OrderedDict[int, Any]) -> Reply:
    op, *rest = request
    if op == "compile":
        return ("ok", _compiled(*rest))
    key, *rest = rest
    if op == "load":
        blob, device_id = rest
        held[key] = loaded(blob, _device(device_id))
        while len(held) > KEEP_LOADED:
            held.popitem(last=False)
        return ("ok", None)
    if key not in held:
        return ("unknown", None)
    held.move_to_end(key)
    args, kwargs = rest
    return ("ok", jax.tree.map(np.asarray, held[key](*args, **kwargs)))


def child_main(conn: multiprocessing.connection.Connection) -> None:
    """An engine process's life (child process): its settings, then requests, one at a time."""
    child_processes.name_process(PROCESS_NAME)
    jax.config.update("jax_enable_compilation_cache", False)  # type: ignore[no-untyped-call]
    child_processes.handshake(conn)
    held: collections.OrderedDict[int, Any] = collections.OrderedDict()
    while True:
        try:
            request = child_processes.receive(conn)
        except EOFError:  # the server is gone
            return
        try:
            reply = _answer(request, held)
        except MemoryError:
            traceback.print_exc()
            os._exit(child_processes.OUT_OF_MEMORY)
        except Exception as e:
            reply = child_processes.portable(e)
        child_processes.send(conn, reply)


def raised(kind: str, reply: Any) -> Any:
    """An engine process's reply, or the error it sent raised here."""
    if kind == "field":
        cls, violations = reply
        raise cls.of(violations)
    if kind == "error":
        raise reply
    return reply


# What a caller whose engine process died can do instead, by what it asked for.
UNARY_ADVICE = (
    "send fewer rows or stream the kernel (StreamKernel, or Client.kernel(..., tile=...))"
)
TILE_ADVICE = "ask for smaller tiles (StreamKernel's tile_size, or Client.kernel(..., tile=...))"


class RemoteExecutable:
    """A compiled program that runs in an engine process: called with the arguments of the
    jitted function it was compiled from, it returns the same structure of numpy arrays.
    `advice`: what its caller can do if the process dies running it."""

    def __init__(
        self, engines: EngineProcesses, key: int, blob: bytes, device_id: int, advice: str
    ) -> None:
        self._engines, self.key, self.blob, self.device_id = engines, key, blob, device_id
        self.advice = advice

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._engines.run(self, args, kwargs)


class EngineProcesses:
    """At most `count` engine processes, each capped at `memory_bytes` of address space more
    than a started one holds (0: the server's own cap)."""

    def __init__(self, count: int, memory_bytes: int, zygote: Zygote | None = None) -> None:
        """`zygote`: where processes are forked from (None: each a fresh interpreter)."""
        self.memory_bytes = memory_bytes
        self._zygote = zygote
        self._pool = child_processes.Pool(count, self._start, spare=True)
        self._keys = itertools.count()

    @property
    def lost(self) -> int:
        """Processes that died, or were stopped, during a request (each one replaced)."""
        return self._pool.lost

    def _start(self) -> child_processes.Child:
        settings = {name: getattr(jax.config, name) for name in JAX_SETTINGS}
        return child_processes.Child(__name__, settings, self.memory_bytes, self._zygote)

    def _using(self, talk: Callable[[child_processes.Child], Reply]) -> Reply:
        """`talk` with an idle process (blocking: call from a worker thread);
        `child_processes.Lost` if it dies or runs past a deadline (then it is replaced)."""
        child = self._pool.take()
        try:
            reply = talk(child)
        except child_processes.Lost:
            self._pool.replace(child)
            raise
        self._pool.give_back(child)
        return reply

    def ask(self, request: tuple[Any, ...], seconds: float | None) -> Reply:
        """An idle process's reply to `request` within `seconds` (None: no deadline)."""
        return self._using(lambda child: child.ask(request, seconds))

    def unary_executable(self, blob: bytes, device: Any) -> RemoteExecutable:
        """A serialized executable (a compile's reply) as one that runs here, for unary calls."""
        return RemoteExecutable(self, next(self._keys), blob, device.id, UNARY_ADVICE)

    def tile_executable(self, blob: bytes, device: Any) -> RemoteExecutable:
        """The same, for a stream's tiles."""
        return RemoteExecutable(self, next(self._keys), blob, device.id, TILE_ADVICE)

    def run(
        self, executable: RemoteExecutable, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Runs `executable` in an engine process; `OverLimit` saying how it died if the
        process does not survive the call."""
        run = ("run", executable.key, args, kwargs)
        load = ("load", executable.key, executable.blob, executable.device_id)

        def talk(child: child_processes.Child) -> Reply:
            if child.state is None:
                child.state = set()  # the keys it was sent
            sent: set[int] = child.state
            kind, reply = ("unknown", None)
            if executable.key in sent:
                kind, reply = child.ask(run, None)
            if kind == "unknown":  # never sent, or dropped since (`KEEP_LOADED`)
                kind, reply = child.ask(load, None)
                sent.add(executable.key)
                if kind == "ok":
                    kind, reply = child.ask(run, None)
            return kind, reply

        try:
            kind, reply = self._using(talk)
        except child_processes.Lost as lost:
            raise OverLimit(
                "",
                f"the engine process running this call died ({lost}): the call may need "
                "more memory than this server could give it (XLA's estimate missed); "
                f"{executable.advice}. Other calls were not affected.",
            ) from None
        return raised(kind, reply)

    def close(self) -> None:
        """Stops every engine process (the server is shutting down)."""
        self._pool.close()


if __name__ == "__main__":
    child_main(multiprocessing.connection.Connection(int(sys.argv[1])))
