"""Issue 17, finding 9, on a real full file system: a tmpfs in a mount namespace of the
server's own (`unshare -m`; skipped where it cannot mount one).

Before: a registration filling the disk answered INTERNAL "database or disk is full", and a
server started on a full disk did not start (WAL's shared-memory index cannot be made, and
`_migrate` wrote on every start). Now: RESOURCE_EXHAUSTED saying the disk is full, and a
server started on a full disk serves what it has, read-only.
"""

from __future__ import annotations

import resource
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ntkserve import Client, errors
from ntkserve_server.testing import SERVER_LISTENING, ListeningProcess

from tests.conftest import timeout_for, wait_until
from tests.server.hostile import (
    ATTACKER,
    MEMORY_CAP_BYTES,
    NEIGHBOUR,
    PROBE_NETWORK,
    PROBE_X,
)
from tests.server.test_hostile_registry import STORAGE_ONLY, register_until_refused, small_network

# -- a real full disk ---------------------------------------------------------------------

_FILL = """
import os, sys
from ntkserve.v1 import architecture_pb2 as pb
from ntkserve_server.registry import Registry
data = sys.argv[1]
registry = Registry(__import__("pathlib").Path(data) / "registry.sqlite3")
arch = pb.Architecture.FromString(bytes.fromhex(sys.argv[2]))
registry.put("neighbour", sys.argv[3], arch)
registry.close()
fd = os.open(os.path.join(data, "..", "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
"""


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d"
    result = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True)
    return result.returncode == 0


def _server_on_tmpfs(tmp_path: Path, size: str, *before: str) -> ListeningProcess:
    """A lab server whose data dir is on a tmpfs of `size`, mounted in a mount namespace of
    its own, after the shell command `before` ran there."""
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "tokens.txt").write_text(f"{ATTACKER} attacker\n{NEIGHBOUR} neighbour\n")
    serve = [sys.executable, "-m", "ntkserve_server", "serve", "--port", "0"]
    serve += ["--data-dir", str(disk / "data"), "--auth-tokens", str(tmp_path / "tokens.txt")]
    serve += STORAGE_ONLY
    steps = [f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(disk))}", *before]
    cap = MEMORY_CAP_BYTES
    return ListeningProcess(
        ["unshare", "-m", "sh", "-c", " && ".join([*steps, f"exec {shlex.join(serve)}"])],
        SERVER_LISTENING,
        "ntkserve serve on a tmpfs",
        preexec=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)),
    )


needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs")


@needs_tmpfs
@timeout_for(30)
def test_a_server_started_on_a_full_disk_serves_read_only_until_space_is_freed(
    tmp_path: Path,
) -> None:
    """A registry written earlier, then the disk filled by something else, then the server
    started: it starts, computes with what it has, and refuses registrations; once the
    filler is deleted (by a process in the server's mount namespace, when the test says so)
    the next registration is stored, without a restart."""
    from ntkserve_engine.kernels import KernelFn

    kfn = KernelFn(PROBE_NETWORK)
    data = tmp_path / "disk" / "data"
    arch = kfn.architecture.SerializeToString().hex()
    fill = shlex.join([sys.executable, "-c", _FILL, str(data), arch, kfn.id])
    free_now = tmp_path / "free-now"  # outside the tmpfs: seen from both namespaces
    signal, filler = shlex.quote(str(free_now)), shlex.quote(str(data.parent / "filler"))
    freer = (
        f"( (while [ ! -e {signal} ]; do sleep 0.05; done; rm {filler}; touch {signal}.done) & )"
    )
    with _server_on_tmpfs(tmp_path, "2m", fill, freer) as server:
        with Client(server.target, token=NEIGHBOUR, timeout=120) as neighbour:
            kernel = neighbour.kernel(kfn.id, PROBE_X, get="nngp")
            assert np.all(np.isfinite(kernel))
            assert neighbour.register(PROBE_NETWORK) == kfn.id  # held already: no write
            with pytest.raises(errors.ResourceExhaustedError) as refused:
                neighbour.register(small_network(7))
            assert "the registry is read-only" in refused.value.message
            assert "bytes free" in refused.value.message
            free_now.touch()
            wait_until(free_now.with_suffix(".done").exists, "the filler deleted")
            stored = neighbour.register(small_network(7))
            assert stored in {a.id for a in neighbour.list_architectures()}
        assert server.wait_for_log("is writable again")


@needs_tmpfs
@timeout_for(40)
def test_registrations_filling_the_disk_are_resource_exhausted(tmp_path: Path) -> None:
    """Before: INTERNAL "disk is full". The registrations acknowledged are kept, and the
    other tenant computes on."""
    with _server_on_tmpfs(tmp_path, "1m") as server:
        with Client(server.target, token=NEIGHBOUR, timeout=120) as neighbour:
            probe = neighbour.register(PROBE_NETWORK)
            neighbour.kernel(probe, PROBE_X, get="nngp")
        acknowledged, refusal = register_until_refused(server.target)
        assert "disk is full" in refusal.message and "delete some" in refusal.message
        assert len(acknowledged) >= 1
        with Client(server.target, token=ATTACKER, timeout=120) as attacker:
            assert set(acknowledged) <= {a.id for a in attacker.list_architectures()}
        with Client(server.target, token=NEIGHBOUR, timeout=120) as neighbour:
            assert neighbour.kernel(probe, PROBE_X, get="nngp").shape == (4, 4)
