"""Networks whose structure asks for unbounded work (issue 17, finding 1), against a real
server capped in memory, while the neighbour tenant's probe times its calls.

Nested repeats (79 bytes asking for 2e8 or 2e12 layer applications per kernel entry) froze
every tenant when a kernel's shape was walked application by application on the event
loop; a repeat whose layer grows the positions was unrolled into a compile of thousands of
layers. Now: refused at registration (INVALID_ARGUMENT naming the layer and the numbers),
shapes walked in O(structure), and a shape-changing repeat refused past its bound before
anything compiles.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ntkserve import Client, errors, stax
from ntkserve_server.testing import ServerProcess

from tests.conftest import timeout_for
from tests.server.hostile import ATTACKER, PROBE_BOUND_SECONDS, Probe, lab_server

pytestmark = timeout_for(30)

BLOCK = stax.serial(stax.Dense(8), stax.Relu())
# The attacker's own deadline: far above a refusal's milliseconds, far below the freeze
# (114 s, or for good) and the compile bomb (minutes) that the attacks were before.
ATTACK_SECONDS = 20.0
X = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
ATTACKS = 20  # each a new connection, registration and refusal: the probe runs throughout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with lab_server(Path(tmp_path_factory.mktemp("hostile-structure"))) as proc:
        yield proc


def _nested(levels: int, n: int) -> stax.Architecture:
    net = BLOCK
    for _ in range(levels):
        net = stax.repeat(net, n)
    return stax.serial(stax.Dense(8), net)


def _attack(target: str, network: stax.Architecture, x: np.ndarray, **kw: object) -> Exception:
    """Registers `network` and asks for a kernel, as the attacker: the error it gets (the
    test fails if it gets a kernel)."""
    with Client(target, token=ATTACKER, timeout=ATTACK_SECONDS) as attacker:
        try:
            architecture_id = attacker.register(network)
            attacker.kernel(architecture_id, x, progress=False, **kw)  # type: ignore[arg-type]
        except errors.NtkServeError as e:
            return e
    raise AssertionError("the attack was answered with a kernel")


@pytest.mark.parametrize("levels", [2, 3])
def test_nested_repeats_are_refused_at_registration(server: ServerProcess, levels: int) -> None:
    slowest = 0.0
    with Probe(server.target) as probe:
        for _ in range(ATTACKS):
            start = time.monotonic()
            error = _attack(server.target, _nested(levels, 10_000), X)
            slowest = max(slowest, time.monotonic() - start)
            assert isinstance(error, errors.InvalidArgumentError), error
    print(
        f"{levels} levels: {ATTACKS} times {type(error).__name__}, slowest {slowest * 1e3:.0f} ms"
    )
    (field, problem), *_ = error.field_violations
    assert field == "architecture.layers[1].repeat"
    assert f"{2 * 10_000**levels:,}" in problem and "100,000" in problem
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
    assert not probe.failures, probe.failures


def test_a_deep_repeat_within_the_bound_is_answered(server: ServerProcess) -> None:
    deep = _nested(2, 100)  # 20,001 applications per entry: within the bound, answered
    with Probe(server.target) as probe, Client(server.target, token=ATTACKER) as attacker:
        architecture_id = attacker.register(deep)
        for rows in (2, 3, 4, 5):
            assert attacker.kernel(architecture_id, X[:1].repeat(rows, 0)).shape == (rows, rows)
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()


@pytest.mark.parametrize("tile", [None, 2])
def test_a_repeat_that_grows_the_positions_is_refused_before_compiling(
    server: ServerProcess, tile: int | None
) -> None:
    grow = stax.ConvTranspose(2, (3,), padding="VALID")  # two positions more each time
    network = stax.serial(stax.repeat(grow, 1000), stax.Flatten(), stax.Dense(1))
    x = np.random.default_rng(2).standard_normal((4, 4, 1)).astype(np.float32)
    with Probe(server.target) as probe:
        error = _attack(server.target, network, x, tile=tile)
    assert isinstance(error, errors.InvalidArgumentError), error
    (field, problem), *_ = error.field_violations
    assert field == "x1.shape" and "architecture.layers[0].repeat" in problem
    assert probe.worst() < PROBE_BOUND_SECONDS, probe.summary()
