"""The `ntkserve` command line against a real server: register, ls, show, kernel, serve.

Every command runs as a separate process, as a shell pipeline would run it; results are
compared with the Python client's answers from the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ntkserve import Architecture, Client
from ntkserve_server.testing import SERVER_LISTENING, ListeningProcess

from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "architectures"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def ntkserve(
    target: str, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ntkserve.cli", *map(str, args), "--target", target],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_examples_include_the_networks_the_readme_promises() -> None:
    names = {p.stem for p in EXAMPLE_FILES}
    assert {"fc", "cnn", "wide_resnet", "transformer_block"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_register_prints_the_id_the_client_gets(server: ServerProcess, path: Path) -> None:
    out = ntkserve(server.target, "register", path)
    assert out.returncode == 0, out.stderr
    with Client(server.target) as client:
        expected = client.register(Architecture.from_json(path.read_text()))
    assert out.stdout.strip() == expected


def test_ls_and_show_list_what_is_registered(server: ServerProcess) -> None:
    fc = EXAMPLES / "fc.json"
    arch_id = ntkserve(server.target, "register", fc).stdout.strip()
    listing = ntkserve(server.target, "ls")
    assert listing.returncode == 0, listing.stderr
    assert any(line.startswith(arch_id) for line in listing.stdout.splitlines())
    rows = [
        json.loads(line)
        for line in ntkserve(server.target, "ls", "--json").stdout.split("\n")
        if line
    ]
    (row,) = [r for r in rows if r["id"] == arch_id]
    assert row["layers"] == ["dense", "relu", "dense", "relu", "dense"]
    shown = ntkserve(server.target, "show", arch_id)
    assert shown.returncode == 0, shown.stderr
    assert Architecture.from_json(shown.stdout) == Architecture.from_json(fc.read_text())


def _save(path: Path, shape: tuple[int, ...], seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    np.save(path, x)
    return x


def test_kernel_writes_what_the_client_computes(server: ServerProcess, tmp_path: Path) -> None:
    x1 = _save(tmp_path / "a.npy", (5, 8), 0)
    x2 = _save(tmp_path / "b.npy", (3, 8), 1)
    fc = EXAMPLES / "fc.json"
    out = ntkserve(
        server.target, "kernel", "--arch", fc, "--x1", tmp_path / "a.npy", "--x2",
        tmp_path / "b.npy", "--get", "ntk", "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    with Client(server.target) as client:
        expected = client.kernel(Architecture.from_json(fc.read_text()), x1, x2, get="ntk")
    written = np.load(tmp_path / "k.npy")
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, expected)


def test_kernel_by_id_with_both_kinds_and_streamed_tiles(
    server: ServerProcess, tmp_path: Path
) -> None:
    x = _save(tmp_path / "img.npy", (5, 6, 6, 3), 2)
    cnn = EXAMPLES / "cnn.json"
    arch_id = ntkserve(server.target, "register", cnn).stdout.strip()
    out = ntkserve(
        server.target, "kernel", "--arch", arch_id, "--x1", tmp_path / "img.npy",
        "--get", "nngp,ntk", "--out", tmp_path / "k.npy", "--tile", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "k.nngp.npy"), str(tmp_path / "k.ntk.npy")]
    with Client(server.target) as client:
        nngp, ntk = client.kernel(arch_id, x, get=("nngp", "ntk"))
    # Tiles of the symmetric kernel and the whole kernel in one call are different programs
    # (off-diagonal tiles are computed as x1 != x2): float32 rounding, relative to the scale.
    for kind, expected in (("nngp", nngp), ("ntk", ntk)):
        got = np.load(tmp_path / f"k.{kind}.npy")
        scale = np.abs(expected).max()
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=64 * np.finfo(np.float32).eps * scale
        )


def test_the_transformer_block_example_computes_a_kernel(
    server: ServerProcess, tmp_path: Path
) -> None:
    _save(tmp_path / "seq.npy", (3, 4, 16), 3)
    out = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "transformer_block.json",
        "--x1", tmp_path / "seq.npy", "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    k = np.load(tmp_path / "k.npy")
    assert k.shape == (3, 3)
    np.testing.assert_array_equal(k, k.T)
    assert np.all(np.linalg.eigvalsh(k.astype(np.float64)) > 0)


def test_bad_inputs_exit_nonzero_and_name_the_problem(
    server: ServerProcess, tmp_path: Path
) -> None:
    _save(tmp_path / "a.npy", (5, 8), 0)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"layers": [{"dense": {"outDim": "many"}}]}')
    out = ntkserve(server.target, "register", bad_json)
    assert out.returncode == 2
    assert str(bad_json) in out.stderr and "outDim" in out.stderr

    wrong_rank = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "cnn.json", "--x1", tmp_path / "a.npy",
        "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert wrong_rank.returncode == 1
    assert "INVALID_ARGUMENT" in wrong_rank.stderr and "x1.shape" in wrong_rank.stderr

    unknown = ntkserve(
        server.target, "kernel", "--arch", "0" * 32, "--x1", tmp_path / "a.npy",
        "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr

    missing = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "fc.json", "--x1", tmp_path / "no.npy",
        "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert missing.returncode == 2 and "no.npy" in missing.stderr

    get = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "fc.json", "--x1", tmp_path / "a.npy",
        "--get", "ntk,svm", "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert get.returncode == 2 and "--get" in get.stderr
    assert not (tmp_path / "k.npy").exists()

    np.save(tmp_path / "ints.npy", np.ones((3, 8), np.int64))
    ints = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "fc.json", "--x1", tmp_path / "ints.npy",
        "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert ints.returncode == 2 and "int64" in ints.stderr and "Traceback" not in ints.stderr

    nowhere = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "fc.json", "--x1", tmp_path / "a.npy",
        "--out", tmp_path / "no" / "such" / "k.npy",
    )  # fmt: skip
    assert nowhere.returncode == 2 and "not a folder" in nowhere.stderr

    no_file = ntkserve(
        server.target, "kernel", "--arch", EXAMPLES / "nope.json", "--x1", tmp_path / "a.npy",
        "--out", tmp_path / "k.npy",
    )  # fmt: skip
    assert no_file.returncode == 2 and "no such file" in no_file.stderr


def test_out_gets_the_npy_suffix_whichever_way_the_kernel_comes(
    server: ServerProcess, tmp_path: Path
) -> None:
    _save(tmp_path / "a.npy", (4, 8), 5)
    fc = EXAMPLES / "fc.json"
    for way, extra in (("unary", ()), ("streamed", ("--tile", "2"))):
        out = ntkserve(
            server.target, "kernel", "--arch", fc, "--x1", tmp_path / "a.npy",
            "--get", "nngp,ntk", "--out", tmp_path / way, *extra,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        printed = out.stdout.split()
        assert printed == [str(tmp_path / f"{way}.{k}.npy") for k in ("nngp", "ntk")]
        assert all(np.load(p).shape == (4, 4) for p in printed)


def test_the_token_comes_from_the_environment_or_a_file(
    start_server: type[ServerProcess], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token-for-the-lab lab\n")
    srv = start_server(tmp_path / "data", "--auth-tokens", str(tokens))
    denied = ntkserve(srv.target, "ls")
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr
    allowed = ntkserve(
        srv.target, "ls", env={**os.environ, "NTKSERVE_TOKEN": "s3cret-token-for-the-lab"}
    )
    assert allowed.returncode == 0, allowed.stderr
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-for-the-lab\n")
    from_file = ntkserve(srv.target, "ls", "--token-file", token_file)
    assert from_file.returncode == 0, from_file.stderr
    # The server's token file (TOKEN TENANT) is not a client token file: said so, not sent.
    wrong = ntkserve(srv.target, "ls", "--token-file", tokens)
    assert wrong.returncode == 2 and "the token alone" in wrong.stderr


def test_serve_takes_its_flags_from_the_environment(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "NTKSERVE_PORT": "0",
        "NTKSERVE_DATA_DIR": str(tmp_path / "data"),
        "NTKSERVE_MAX_QUEUE": "not-a-number",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "ntkserve.cli", "serve"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "NTKSERVE_MAX_QUEUE" in refused.stderr

    env["NTKSERVE_MAX_QUEUE"] = "3"
    env["NTKSERVE_AUTH_TOKENS"] = ""  # set to nothing (compose's `VAR=`): the default, no tokens
    with ListeningProcess(
        [sys.executable, "-m", "ntkserve.cli", "serve"],
        SERVER_LISTENING,
        "ntkserve serve, configured by the environment",
        env=env,
    ) as proc:
        assert ntkserve(proc.target, "ls").returncode == 0
        assert (tmp_path / "data" / "registry.sqlite3").exists()


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--device-flops-per-second", "0", "must be a rate per second > 0"),
        ("--device-bytes-per-second", "nan", "must be a rate per second > 0"),
        ("--max-call-seconds", "-1", "must be a number of seconds >= 0"),
    ],
)
def test_the_time_budgets_flags_refuse_what_cannot_be_a_rate(
    flag: str, value: str, says: str, tmp_path: Path
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "ntkserve.cli", "serve", "--data-dir", str(tmp_path), flag, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert flag in refused.stderr and says in refused.stderr


def test_the_command_line_imports_no_jax() -> None:
    code = (
        "import sys, ntkserve.cli; "
        "sys.exit('jax' in sys.modules or 'ntkserve_server' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_fit_predict_models_and_tune_from_the_shell(server: ServerProcess, tmp_path: Path) -> None:
    """`ntkserve fit` prints the model's id, `predict` writes what Model.predict answers,
    `models` lists it, `tune` prints the tuned values; bad flags are usage errors."""
    rng = np.random.default_rng(4)
    x, y, x_test = (
        rng.standard_normal((20, 784)),
        rng.standard_normal((20, 3)),
        rng.standard_normal((5, 784)),
    )
    for name, array in (("x", x), ("y", y), ("x_test", x_test)):
        np.save(tmp_path / f"{name}.npy", array)
    fc = EXAMPLES / "fc.json"
    fitted = ntkserve(
        server.target,
        "fit",
        "--arch",
        fc,
        "--x",
        tmp_path / "x.npy",
        "--y",
        tmp_path / "y.npy",
        "--diag-reg",
        "1e-3",
    )
    assert fitted.returncode == 0, fitted.stderr
    model_id = fitted.stdout.strip()
    assert "solved by cholesky" in fitted.stderr
    out = tmp_path / "p.npy"
    predicted = ntkserve(
        server.target,
        "predict",
        model_id,
        "--x",
        tmp_path / "x_test.npy",
        "--t",
        "1,5",
        "--covariance",
        "marginal",
        "--out",
        out,
    )
    assert predicted.returncode == 0, predicted.stderr
    with Client(server.target) as client:
        want = client.model(model_id).predict(x_test, [1.0, 5.0], covariance="marginal")
    np.testing.assert_array_equal(np.load(tmp_path / "p.mean.npy"), want.mean)
    np.testing.assert_array_equal(np.load(tmp_path / "p.covariance.npy"), want.covariance)
    listed = ntkserve(server.target, "models", "--json")
    assert model_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    tuned = ntkserve(
        server.target,
        "tune",
        "--arch",
        fc,
        "--x",
        tmp_path / "x.npy",
        "--y",
        tmp_path / "y.npy",
        "--get",
        "nngp",
        "--diag-reg",
        "0.1",
        "--param",
        "diag_reg=0.01:1",
        "--steps",
        "3",
    )
    assert tuned.returncode == 0, tuned.stderr
    assert set(json.loads(tuned.stdout)["values"]) == {"diag_reg"}
    bad = ntkserve(server.target, "predict", model_id, "--t", "soon", "--out", out)
    assert bad.returncode == 2 and "--t 'soon'" in bad.stderr
    refused = ntkserve(server.target, "predict", model_id, "--t", "-1", "--out", out)
    assert refused.returncode == 2 and "t: times must be >= 0" in refused.stderr
