"""The zygote is forked only while the server has no thread (`zygote.fork_zygote`): a fork
of a multithreaded process can inherit a lock another thread held. Forks of a real zygote,
their exit codes and the fallback when it dies are tested on a real server
(test_hostile_compute.py)."""

from __future__ import annotations

import threading

from ntkserve_server.zygote import fork_zygote


def test_there_is_no_zygote_once_a_thread_runs() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert fork_zygote(()) is None
    finally:
        stop.set()
        thread.join()
