"""Shared fixtures and helpers: a real `ntkserve serve` process on a free loopback port (the
harness is `ntkserve_server.testing`, which the benchmarks use too), a stream that holds a
slot, waiting for a condition, a server's Prometheus metrics, per-test timeouts."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ntkserve_server.testing import ServerProcess

__all__ = ["HeldStream", "ServerProcess"]

# How long a test waits for what should happen at once (a log line, a held slot, a gauge's
# change): long enough for a busy machine, and a passing test never waits it out.
WAIT_SECONDS = 120.0
# Timeouts guard against hangs, not slowness: under load (two pytest workers on two cores and
# a second job) tests ran over 4x slower than alone. A test's own timeout is this many times
# its time alone, never below the global one of pyproject.toml (300 s, for tests of up to
# ~35 s alone).
BUSY_FACTOR = 8
GLOBAL_TIMEOUT_SECONDS = 300


def timeout_for(seconds_alone: float) -> pytest.MarkDecorator:
    """The timeout marker of a test that takes `seconds_alone` on an idle 2-core machine."""
    return pytest.mark.timeout(max(GLOBAL_TIMEOUT_SECONDS, BUSY_FACTOR * seconds_alone))


def wait_until(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    """Polls `condition` until it holds; fails saying `what` did not happen within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.05)


METRICS_LINE = re.compile(r"metrics on http://([\d.]+):(\d+)/metrics")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ServerProcess) -> Samples:
    """The /metrics samples of a server started with --metrics-port, by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    assert server.wait_for_log("metrics on http://")
    host, port = METRICS_LINE.search(server.log_text()).groups()  # type: ignore[union-attr]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def jobs_running(server: ServerProcess) -> float:
    return metric(scrape(server), "ntkserve_jobs_running")


class HeldStream:
    """A StreamKernel call that holds one of the server's running slots (and its tenant's)
    for as long as a test needs: it sends a whole job (a kernel of `rows` rows of one
    feature: 8192 rows make 128 MiB of tiles, far past what gRPC's flow-control windows
    buffer) and then reads nothing, so the server, computing, waits to send. A stream takes
    its slot when its compute starts, not when it opens: one that sends nothing holds none
    (issue 17, finding 6)."""

    def __init__(
        self,
        target: str,
        architecture_id: str,
        metadata: tuple[tuple[str, str], ...] = (),
        rows: int = 8192,
    ) -> None:
        import grpc
        import numpy as np
        from ntkserve import kinds, tensor
        from ntkserve.v1 import kernel_service_pb2 as ks
        from ntkserve.v1 import kernel_service_pb2_grpc

        x = np.zeros((rows, 1), np.float32)
        header = ks.StreamKernelHeader(
            architecture_id=architecture_id,
            get=kinds.to_codes(("nngp",)),
            dtype=tensor.dtype_code(x.dtype),
            x1_shape=x.shape,
        )
        job = [
            ks.StreamKernelRequest(header=header),
            ks.StreamKernelRequest(
                chunk=ks.InputChunk(slot=ks.INPUT_SLOT_X1, offset=0, data=x.tobytes())
            ),
        ]
        self._channel = grpc.insecure_channel(target)
        stub = kernel_service_pb2_grpc.KernelServiceStub(self._channel)
        self.call = stub.StreamKernel(iter(job), timeout=WAIT_SECONDS, metadata=metadata)

    def cancel(self) -> None:
        self.call.cancel()
        self._channel.close()

    def __enter__(self) -> HeldStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests that only need a server, not a fresh one."""
    proc = ServerProcess(tmp_path_factory.mktemp("server-data"))
    yield proc
    proc.terminate()


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    """Starts servers the test owns (restarts, signals); all are stopped afterwards."""
    started: list[ServerProcess] = []

    class Owned(ServerProcess):
        def __init__(self, data_dir: Path | None = None, *extra: str) -> None:
            super().__init__(data_dir or tmp_path / "data", *extra)
            started.append(self)

    yield Owned
    for proc in started:
        proc.kill()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (dev.py test): a file's tests stay on one worker, with its
    module fixtures (servers) and order, except the engine's, which have no shared fixtures
    and are spread test by test, so that a slow one does not leave a worker idle at the end."""
    for item in items:
        path = Path(str(item.fspath))
        if "engine" not in path.relative_to(Path(__file__).parent).parts[:1]:
            item.add_marker(pytest.mark.xdist_group(str(path)))
