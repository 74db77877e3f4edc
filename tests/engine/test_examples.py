"""Each of examples/architectures/*.json computes a kernel, in process, on the input shape
its README documents: the README's table is read here, so it cannot drift from the files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from ntkserve import Architecture
from ntkserve_engine import kernel_fn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "architectures"
# A row of the table: | [`name.json`](name.json) | network | takes | `(N, ...)` |
ROW = re.compile(r"^\| \[`(?P<file>[\w.]+\.json)`\].*\| `\(N, (?P<shape>[\d, ]+)\)` \|$")
N = 2


def _documented() -> dict[str, tuple[int, ...]]:
    rows = (ROW.match(line) for line in (EXAMPLES / "README.md").read_text().splitlines())
    return {m["file"]: tuple(int(d) for d in m["shape"].split(",")) for m in rows if m is not None}


def test_every_example_has_a_documented_shape() -> None:
    assert sorted(_documented()) == sorted(p.name for p in EXAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(_documented()))
def test_the_example_computes_on_its_documented_shape(name: str) -> None:
    arch = Architecture.from_json((EXAMPLES / name).read_text())
    shape = (N, *_documented()[name])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    nngp, ntk = (np.asarray(k) for k in kernel_fn(arch)(x, None, get=("nngp", "ntk")))
    assert nngp.shape == ntk.shape == (N, N)
    assert np.isfinite(nngp).all() and np.isfinite(ntk).all()
    assert (np.diag(nngp) > 0).all() and (np.diag(ntk) >= np.diag(nngp)).all()
