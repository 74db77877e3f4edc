"""Issue 17, "what to build": a computation that dies is contained. Admission estimates a
call's memory and time before it runs, but where the estimate misses, the out-of-memory
killer ends the process that allocates; unary programs and streamed tiles run in engine
processes (`engine_processes`), so that process is not the server.

The death is real: the test sends SIGKILL (what the OOM killer sends) to the engine process
while it computes the attacker's call. On the code before engine processes there is none to
kill: the same SIGKILL would have to go to the server itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from ntkserve import Client, stax
from ntkserve.errors import NtkServeError, ResourceExhaustedError
from ntkserve_engine.kernels import KernelFn
from ntkserve_server.engine_processes import PROCESS_NAME
from ntkserve_server.testing import ServerProcess

from tests.conftest import WAIT_SECONDS, metric, scrape, timeout_for, wait_until
from tests.server.hostile import ATTACKER, PROBE_BOUND_SECONDS, Probe, lab_server

# A unary call long enough to be caught computing (~1 s here alone; estimated under the
# default time budget), small enough not to stream (inputs and kernel under the client's 32
# MiB): the NTK of an 8-layer ReLU MLP over 2,500 inputs of 1,024 features.
NETWORK = stax.serial(
    *[layer for _ in range(8) for layer in (stax.Dense(512), stax.Relu())], stax.Dense(1)
)
X = np.random.default_rng(11).standard_normal((2500, 1024)).astype(np.float32)
X_STREAMED = np.random.default_rng(12).standard_normal((4000, 1024)).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("hostile-compute")
    flags = ("--workers", "2", "--compile-workers", "1", "--metrics-port", "0")
    with lab_server(directory, *flags) as proc:
        yield proc


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, name as `ps -o comm` shows it)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), name)
    return found


def _descendants(pid: int, name: str) -> list[int]:
    """The pids of `pid`'s descendants called `name`."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in processes.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if processes[child][1] == name:
                found.append(child)
    return sorted(found)


def _engine_processes(server: ServerProcess) -> list[int]:
    """The pids of the server's engine processes (forks of its zygote, or where it has
    none, children it started)."""
    return _descendants(server.pid, PROCESS_NAME)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in 1/100 s


# A process at work on the attacker's call uses far more than this share of a core, even
# with the suite's other jobs on the two cores; the neighbour's probe (a few ms every 50 ms)
# and idle processes use far less.
BUSY_SHARE = 0.2


def _busy(pids: list[int], window: float = 0.3) -> list[int]:
    """The processes that used more than `BUSY_SHARE` of a core over `window` seconds,
    busiest first."""
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(window)
    used = {pid: _cpu_ticks(pid) - before[pid] for pid in pids}
    busy = [pid for pid in pids if used[pid] > 100 * BUSY_SHARE * window]
    return sorted(busy, key=lambda pid: -used[pid])


def _in_parallel(*calls: Callable[[], object]) -> list[object]:
    """Each call on a thread of its own; their results (or exceptions), in order."""
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except NtkServeError as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    return results


def _killed_while_computing(
    server: ServerProcess, call: Callable[[], object]
) -> tuple[object, int]:
    """`call` (already run once: compiled, engine processes started) run again while the
    neighbour's probe calls; the engine process computing it gets SIGKILL. Returns what the
    call gave and the killed pid (the probe's bound is checked here)."""
    engines = _engine_processes(server)
    assert len(engines) >= 2  # the ones that computed, and a spare
    wait_until(lambda: not _busy(engines), "the engine processes are idle")
    with Probe(server.target) as probe:
        outcome: list[object] = []
        attack = threading.Thread(target=lambda: outcome.extend(_in_parallel(call)))
        attack.start()
        computing: list[int] = []
        wait_until(lambda: bool(computing.extend(_busy(engines)) or computing), "computing")
        os.kill(computing[0], signal.SIGKILL)
        attack.join(WAIT_SECONDS)
        time.sleep(0.5)  # the probe goes on calling after the death
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
    assert not probe.failures, probe.failures
    assert server.proc.poll() is None  # the server is up
    (got,) = outcome
    return got, computing[0]


def _refused(outcome: object, advice: str) -> None:
    assert isinstance(outcome, ResourceExhaustedError), outcome
    message = str(outcome)
    print(message)
    assert "the engine process running this call died (killed by SIGKILL)" in message
    assert advice in message


@timeout_for(60)
def test_a_computation_that_dies_costs_its_call_alone(server: ServerProcess) -> None:
    """The call gets RESOURCE_EXHAUSTED saying its engine process died and how; the server
    and the neighbour's calls go on; a fresh engine process computes the next call, bit for
    bit what the engine computes in process."""
    with Client(server.target, token=ATTACKER, timeout=WAIT_SECONDS) as attacker:
        architecture_id = attacker.register(NETWORK)

        def big() -> object:
            return attacker.kernel(architecture_id, X, get="ntk")

        warm = _in_parallel(big, big)  # compiled, and both engine processes started
        assert all(isinstance(k, np.ndarray) for k in warm), warm
        lost_before = metric(scrape(server), "ntkserve_engine_processes_lost_total")
        refused, killed = _killed_while_computing(server, big)
        _refused(refused, "stream the kernel")
        lost = metric(scrape(server), "ntkserve_engine_processes_lost_total")
        assert lost == lost_before + 1

        again = attacker.kernel(architecture_id, X[:500], get="ntk")
        assert killed not in _engine_processes(server)
        want = KernelFn(NETWORK)(X[:500], None, get="ntk")
        np.testing.assert_array_equal(again, want)


@timeout_for(60)
def test_a_tile_computation_that_dies_costs_its_stream_alone(server: ServerProcess) -> None:
    """Streamed tiles compute in engine processes too: the stream whose tile's process died
    gets RESOURCE_EXHAUSTED saying so (and to ask for smaller tiles); the next stream gives
    every bit the same stream gave before."""
    with Client(server.target, token=ATTACKER, timeout=WAIT_SECONDS) as attacker:
        architecture_id = attacker.register(NETWORK)

        def streamed() -> object:  # 36 tiles of 500 x 500, ~0.1 s each here alone
            return attacker.kernel(architecture_id, X_STREAMED, get="ntk", tile=500)

        before = streamed()
        assert isinstance(before, np.ndarray)
        lost_before = metric(scrape(server), "ntkserve_engine_processes_lost_total")
        refused, killed = _killed_while_computing(server, streamed)
        _refused(refused, "ask for smaller tiles")
        lost = metric(scrape(server), "ntkserve_engine_processes_lost_total")
        assert lost == lost_before + 1
        assert killed not in _engine_processes(server)
        np.testing.assert_array_equal(streamed(), before)


def _computes(client: Client, architecture_id: str, x: np.ndarray, want: np.ndarray) -> bool:
    """Whether the call now gives `want` (False: its engine process was found dead)."""
    try:
        got = client.kernel(architecture_id, x, get="ntk")
    except ResourceExhaustedError:
        return False
    np.testing.assert_array_equal(got, want)
    return True


@timeout_for(60)
def test_engine_processes_are_forks_of_the_zygote_and_outlive_it(
    start_server: type[ServerProcess],
) -> None:
    """Engine processes are forked from the server's zygote (no second load of jax); when
    the zygote dies the server starts fresh interpreters instead, with the same results."""
    server = start_server(None, "--workers", "1", "--compile-workers", "1")
    with Client(server.target, timeout=WAIT_SECONDS) as client:
        architecture_id = client.register(NETWORK)
        want = client.kernel(architecture_id, X[:50], get="ntk")
        (zygote,) = _descendants(server.pid, "ntkserve-zygote")
        engines = _engine_processes(server)
        assert engines, "no engine process"
        assert all(_processes()[pid][0] == zygote for pid in engines)
        os.kill(zygote, signal.SIGKILL)
        for pid in engines:
            os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: _computes(client, architecture_id, X[:50], want),
            "a fresh engine process computes",
        )
        fresh = _engine_processes(server)
        assert fresh and not set(fresh) & set(engines)
        assert all(_processes()[pid][0] == server.pid for pid in fresh)
