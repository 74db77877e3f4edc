"""The zygote: a copy of the server, forked before it starts any thread, that forks the
server's child processes (`child_processes.Child`) on request.

A child started as a fresh interpreter loads jax again (~2 s of CPU on a 2-core machine,
for every engine process, and again for each one that dies and is replaced). The zygote
holds the server's modules already imported, with no jax backend and no thread of its own,
so a fork of it starts in milliseconds and shares their pages. The server must fork it
before anything starts a thread and before grpc is imported (`fork_zygote`, called by the
command line before it imports the server): a fork of a
multithreaded process can inherit a lock some other thread held. The only other threads
then are OpenBLAS's workers, which numpy and scipy start at import (counted: one each on 2
cores), and OpenBLAS shuts them down around a fork (`pthread_atfork`).

Protocol, over one SOCK_SEQPACKET socket pair (one message per send): the server sends a
module's name with the child's end of its connection attached (SCM_RIGHTS); the zygote forks,
the fork runs that module's `child_main(conn)` and exits, and the zygote answers
("started", pid). When a fork ends, the zygote reaps it and sends ("exit", pid, exit code as
`subprocess` reports it: negative for a signal). The zygote ends when the server's end
closes (the server stopped or died); the forks then read end-of-file on their own
connections and end too. If the zygote dies, the server starts fresh interpreters instead.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing.connection
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback

from ntkserve_server import child_processes

MESSAGE_BYTES = 4096  # a module name, or a ("started" | "exit", pid, ...) tuple
SPAWN_SECONDS = 60  # a fork takes milliseconds; a zygote that has not answered by then is stuck


def fork_zygote(modules: tuple[str, ...]) -> Zygote | None:
    """The zygote of this process, forked now with `modules` (those its forks run) imported;
    None where a fork would not be safe (a Python thread already runs) or possible. Call it
    before grpc is imported, which registers at-fork handlers: forked after it, one server
    in a suite run failed to start ("epoll_wait error: Bad file descriptor")."""
    for module in modules:
        importlib.import_module(module)
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the zygote
        ours.close()
        code = 0
        try:
            _zygote(theirs)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    theirs.close()
    return Zygote(pid, ours)


class Forked:
    """A child the zygote forked: what `subprocess.Popen` offers `Child` (kill, wait)."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid

    def kill(self) -> None:
        if self.zygote.exit_code(self.pid) is None:  # not reaped: the pid is still its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (negative: the signal that ended it), as `Popen.wait`."""
        code = self.zygote.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
        return code


class Zygote:
    """The server's end: `spawn` a child, learn how children ended, `close`."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self._sock = pid, sock
        self._spawning = threading.Lock()  # one request at a time: replies pair with requests
        self._changed = threading.Condition()
        self._started: list[int] = []
        self._exits: dict[int, int] = {}
        self.alive = True
        threading.Thread(target=self._read, name="ntkserve-zygote", daemon=True).start()

    def spawn(self, module: str, conn_fd: int) -> Forked:
        """A fork running `module.child_main` on `conn_fd` (which it now holds);
        OSError if the zygote is gone."""
        with self._spawning, self._changed:
            if not self.alive:
                raise OSError("the zygote has ended")
            socket.send_fds(self._sock, [module.encode()], [conn_fd])
            self._changed.wait_for(lambda: self._started or not self.alive, SPAWN_SECONDS)
            if not self._started:  # ended, or stuck: no later reply may pair with a request
                self.alive = False
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                raise OSError("the zygote did not fork")
            return Forked(self, self._started.pop(0))

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        """A fork's exit code once it ended (None: not within `timeout`, or never to be
        known: the zygote ended first)."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or not self.alive, timeout)
            return self._exits.get(pid)

    def _read(self) -> None:
        while True:
            try:
                message = self._sock.recv(MESSAGE_BYTES)
            except OSError:
                message = b""
            with self._changed:
                if not message:
                    self.alive = False
                    self._changed.notify_all()
                    return
                kind, pid, *rest = pickle.loads(message)
                if kind == "started":
                    self._started.append(pid)
                else:
                    self._exits[pid] = rest[0]
                self._changed.notify_all()

    def close(self) -> None:
        """Ends the zygote (its forks end when their connections close). Shut down, not
        only closed: the reader thread's pending recv would keep the socket open."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _zygote(sock: socket.socket) -> None:
    """The zygote's life: fork on each request, report each fork's end, until the server's
    end closes. One thread: signals arrive as bytes on a pipe that `select` watches."""
    child_processes.name_process("ntkserve-zygote")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the server's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            while _drained(wake_r):
                pass
            _report_exits(sock)
        if sock.fileno() in readable:
            message, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 1)
            if not message:
                return  # the server is gone
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for closed in (sock.fileno(), wake_r, wake_w):
                    os.close(closed)
                _child(message.decode(), fds[0])
            os.close(fds[0])
            sock.send(pickle.dumps(("started", pid)))


def _drained(fd: int) -> bool:
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(pickle.dumps(("exit", pid, os.waitstatus_to_exitcode(status))))


def _child(module: str, conn_fd: int) -> None:
    """A fork's life: the module's `child_main` on its connection, then its exit status
    (`SystemExit`'s code; 1 for an error it did not handle)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # as a fresh interpreter's stdin (subprocess.DEVNULL)
    os.close(devnull)
    code = 0
    try:
        conn = multiprocessing.connection.Connection(conn_fd)
        importlib.import_module(module).child_main(conn)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
