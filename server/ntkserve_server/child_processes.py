"""Supervised child processes: where work that may die (a compile, a computation) runs so that
its death costs one request, not the server (issue 17).

A `Child` is a fork of the server's zygote (`zygote`: a copy of the server made before its
threads, jax imported but not started; milliseconds), or where there is none (a server built
in a test's process) or it is gone, a fresh interpreter (`python -m MODULE FD`: jax is
multithreaded, so no fork of the running server; not multiprocessing's spawn, which
re-imports the server's main module). Either way it has the server's environment
(XLA_FLAGS, so the same devices), runs MODULE's `child_main`, and talks over one socket: the server
sends its jax settings and an address-space cap, the child loads jax (`handshake`) and says
"ready", then answers one request at a time. `ask` returns its reply, or raises `Lost` with
how it died (a signal, running out of memory, a deadline passed: then it is killed). A
`Pool` of `count` children starts one when work finds none idle and replaces one that was
lost. `engine_processes` says what a request is.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
from ntkserve.field_errors import FieldError

if TYPE_CHECKING:
    from ntkserve_server.zygote import Forked, Zygote

# A child loads jax before its first request: seconds, even on a busy machine; not counted
# against a request's deadline.
START_SECONDS = 120
OUT_OF_MEMORY = 70  # a child's exit status after a MemoryError (its state is not trusted)


def portable(error: Exception) -> tuple[str, Any]:
    """An error as it crosses back to the server (FieldErrors do not pickle by their args)."""
    if isinstance(error, FieldError):
        return ("field", (type(error), error.violations))
    try:
        pickle.dumps(error)
        return ("error", error)
    except Exception:
        return ("error", RuntimeError(f"{type(error).__name__}: {error}"))


def send(conn: multiprocessing.connection.Connection, message: Any) -> None:
    """Sends a request or reply with its large buffers (numpy arrays: a kernel's inputs and
    results) out of band (pickle protocol 5): the pickle and the buffers' sizes first, then
    each buffer's bytes written to the socket from where they lie, with no copy."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [buffer.raw() for buffer in buffers]
    conn.send((head, [view.nbytes for view in views]))
    for view in views:
        while view.nbytes:
            view = view[os.write(conn.fileno(), view) :]


def receive(conn: multiprocessing.connection.Connection) -> Any:
    """What `send` sent, each buffer read from the socket into writable memory of its own."""
    head, sizes = conn.recv()
    buffers = [bytearray(size) for size in sizes]
    for buffer in buffers:
        view = memoryview(buffer)
        while view.nbytes:
            read = os.readv(conn.fileno(), [view])
            if not read:
                raise EOFError
            view = view[read:]
    return pickle.loads(head, buffers=buffers)


class Lost(Exception):
    """A child died, or was stopped past its deadline, during a request."""


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
    """Caps the address space at what it is now plus `memory_bytes`: what requests may add
    to a started child, whatever its backend reserved (a GPU runtime reserves far more
    address space than memory)."""
    memory_bytes += _address_space()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))


def _first_to_go() -> None:
    """Asks the kernel's out-of-memory killer to pick this process before any other of the
    server's (Linux; raising one's own score needs no privilege): an allocation no estimate
    foresaw then ends the child that made it, not the server."""
    try:
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write("1000")
    except OSError:
        pass


def name_process(name: str) -> None:
    """Names this process as `ps -o comm` and `top` show it (Linux; at most 15 bytes), so
    an operator, or a test, tells the server's children apart."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass


def warm_up() -> None:
    """Loads jax's backend and the compiler's libraries and threads: a child does this
    before its address space is capped, so the cap bounds its requests only."""
    jax.jit(lambda x: x + 1).lower(0.0).compile()


def handshake(conn: multiprocessing.connection.Connection) -> None:
    """The child's side of starting: the server's jax settings applied, jax loaded, the
    address space capped (0: not), then "ready"."""
    settings, cap = conn.recv()
    for name, value in settings.items():
        jax.config.update(name, value)  # type: ignore[no-untyped-call]
    _first_to_go()
    warm_up()
    if cap:
        _cap_address_space(cap)
    conn.send("ready")


def cause(exitcode: int | None) -> str:
    """How a child ended, in words."""
    if exitcode is None:
        return "it did not exit"
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    if exitcode == OUT_OF_MEMORY:
        return "out of memory"
    return f"exit status {exitcode}"


def _started(module: str, fd: int, zygote: Zygote | None) -> subprocess.Popen[bytes] | Forked:
    """A child running `module.child_main` on the socket `fd`: a fork of the zygote, or a
    fresh interpreter where there is none or it is gone."""
    if zygote is not None:
        try:
            return zygote.spawn(module, fd)
        except OSError:
            pass
    return subprocess.Popen(
        [sys.executable, "-m", module, str(fd)], stdin=subprocess.DEVNULL, pass_fds=(fd,)
    )


# Each end's socket buffer: the kernel's default (~208 KiB) splits a 4 MiB tile into ~20
# wake-ups of the reader; 1 MiB (Linux doubles it) moved 4 MiB messages between two
# processes at 7.2 GB/s against 3.8 here (2-core CPU machine). Capped by
# net.core.wmem_max / rmem_max.
SOCKET_BUFFER_BYTES = 1 << 20


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    pair = socket.socketpair()
    for end in pair:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    return pair


class Child:
    """One child process running `module`, and the server's end of its socket."""

    def __init__(
        self, module: str, settings: dict[str, Any], cap: int, zygote: Zygote | None = None
    ) -> None:
        ours, theirs = _socket_pair()
        self.process = _started(module, theirs.fileno(), zygote)
        theirs.close()
        self.conn = multiprocessing.connection.Connection(ours.detach())
        self.conn.send((settings, cap))
        self.ready = False  # its "ready" (jax loaded) received: deadlines count after
        self.state: Any = None  # what its module keeps about it (say, what it has loaded)

    def is_ready(self) -> bool:
        """Whether it has loaded jax (its "ready" received, or waiting to be read)."""
        try:
            if not self.ready and self.conn.poll(0):
                self.ready = self.conn.recv() == "ready"
        except (EOFError, OSError):
            pass  # dead: its next request says how
        return self.ready

    def exitcode(self) -> int | None:
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            return None

    def ask(self, request: Any, seconds: float | None) -> Any:
        """The child's reply; `Lost` with the cause when it dies or runs past `seconds`
        (None: no deadline)."""
        try:
            if not self.ready:
                if not self.conn.poll(START_SECONDS):
                    self.stop()
                    raise Lost(f"it did not start in {START_SECONDS} s")
                self.ready = self.conn.recv() == "ready"
            send(self.conn, request)
            if self.conn.poll(seconds):
                return receive(self.conn)
        except (EOFError, OSError):
            raise Lost(cause(self.exitcode())) from None
        self.stop()
        raise Lost(f"it took longer than {seconds:g} s and was stopped")

    def stop(self) -> None:
        self.process.kill()
        self.exitcode()
        self.conn.close()


class Pool:
    """At most `count` children made by `start`: `take` one (an idle one: those that have
    loaded jax first, the most recently given back first, so sequential requests keep to one
    child and what it has loaded; else a new one while fewer than `count` run; else wait for
    the next idle), then `give_back` it, or `replace` it when it was lost (a fresh one takes
    its place at once). With `spare`, a `take` that leaves none idle starts one more while
    fewer than `count` run, so the next request need not wait for a child to load jax."""

    def __init__(self, count: int, start: Callable[[], Child], spare: bool = False) -> None:
        self.lost = 0  # children that died or were stopped during a request
        self._start = start
        self._spare = spare
        self._idle: list[Child] = []
        self._all: set[Child] = set()
        self._unstarted = count
        self._changed = threading.Condition()

    def _started(self) -> Child:
        self._unstarted -= 1
        child = self._start()
        self._all.add(child)
        return child

    def take(self) -> Child:
        with self._changed:
            while not self._idle and not self._unstarted:
                self._changed.wait()
            if self._idle:
                ready = [child for child in self._idle if child.is_ready()]
                child = (ready or self._idle)[-1]  # the last given back: what it holds is warm
                self._idle.remove(child)
            else:
                child = self._started()
            if self._spare and self._unstarted and not self._idle:
                self._idle.append(self._started())
            return child

    def give_back(self, child: Child) -> None:
        with self._changed:
            self._idle.append(child)
            self._changed.notify()

    def replace(self, child: Child) -> None:
        self.lost += 1
        child.stop()
        with self._changed:
            self._all.discard(child)
            self._unstarted += 1
            self._idle.append(self._started())  # the next request finds it started
            self._changed.notify()

    def close(self) -> None:
        """Stops every child (the server is shutting down)."""
        for child in list(self._all):
            child.stop()
        self._all.clear()
