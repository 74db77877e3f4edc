"""Two servers on one port (issue 17, finding 12): grpc's SO_REUSEPORT let a second server
bind a port in use and print "listening", sharing the first one's calls. The second one now
refuses to start, saying the port is in use, with a non-zero exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ntkserve import Client, stax
from ntkserve_server.testing import START_SECONDS, ServerProcess

from tests.conftest import timeout_for

pytestmark = timeout_for(30)


def test_a_second_server_on_a_port_in_use_refuses_to_start(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "first") as first:
        host, port = first.target.rsplit(":", 1)
        command = [sys.executable, "-m", "ntkserve_server", "serve", "--host", host]
        second = subprocess.Popen(
            [*command, "--port", port, "--data-dir", str(tmp_path / "second")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert second.stdout is not None and second.stderr is not None
            said = second.stdout.readline()  # its listening line, or "" once it has exited
            assert "listening" not in said, f"a second server started on port {port}: {said}"
            status = second.wait(START_SECONDS)
            stderr = second.stderr.read()
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert status != 0
        assert f"cannot listen on {host}:{port}: port {port} is in use" in stderr, stderr
        with Client(first.target) as client:  # the first one still serves
            x = [[1.0, 2.0], [3.0, 4.0]]
            assert client.kernel(stax.serial(stax.Dense(4), stax.Relu()), x).shape == (2, 2)
