"""The `ntkserve` command: the client's operations for shell pipelines, and `serve`.

    ntkserve register ARCH.json                       # prints the architecture's id
    ntkserve kernel --arch ARCH.json --x1 A.npy [--x2 B.npy] --get ntk --out K.npy
    ntkserve ls [--json]                              # the registered architectures
    ntkserve show ID                                  # one architecture, as JSON
    ntkserve fit / predict / models / tune ...        # served models (cli_models.py)
    ntkserve serve [...]                              # the server (needs ntkserve-server)

Architecture files use the protobuf JSON mapping of `ntkserve.v1.Architecture` (what
`Architecture.to_json()` writes; examples/architectures/ holds some, and its README the input
shapes each takes). Arrays are .npy files, read without pickle. The server is `--target` or
$NTKSERVE_TARGET (default localhost:50051); a bearer token comes from $NTKSERVE_TOKEN or
`--token-file`, never from the command line, where other users of the machine could read it
in the process list.

Exit status: 0 on success, 1 when the server refuses or fails a call (its status code and
message go to stderr), 2 for a usage error or an unreadable file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ntkserve import cli_models, errors, kinds
from ntkserve.assembly import output_paths
from ntkserve.cli_support import (
    UsageError,
    architecture,
    architecture_or_id,
    array,
    client,
    common_flags,
    writable,
)
from ntkserve.streaming import STREAM_THRESHOLD_BYTES
from ntkserve.tensor import TensorError

# ntkserve-server is not on PyPI: it installs from a checkout, with the engine it runs.
SERVER_INSTALL = (
    "the server (ntkserve-server), which is not installed. It is not published yet; from a "
    "checkout of ntkserve: pip install ./client ./engine ./server (or `uv sync` there, "
    "which puts all three in .venv)"
)
LAYERS_WIDTH = 60  # `ls` shortens a long chain of top-level layers to about this


def _parser() -> argparse.ArgumentParser:
    common = common_flags()
    parser = argparse.ArgumentParser(
        prog="ntkserve",
        description="Kernels of infinite-width networks, served over gRPC.",
        epilog="`ntkserve serve --help` lists the server's options (needs ntkserve-server).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the gRPC server (ntkserve-server)", add_help=False)
    register = commands.add_parser(
        "register", parents=[common], help="register an architecture; print its id"
    )
    register.add_argument("arch", type=Path, metavar="ARCH.json")
    kernel = commands.add_parser(
        "kernel", parents=[common], help="compute a kernel between .npy inputs"
    )
    kernel.add_argument(
        "--arch", required=True, metavar="ARCH", help="an architecture file, or a registered id"
    )
    kernel.add_argument("--x1", type=Path, required=True, metavar="A.npy")
    kernel.add_argument(
        "--x2", type=Path, default=None, metavar="B.npy", help="default: x2 = x1 (symmetric)"
    )
    kernel.add_argument(
        "--get",
        default="ntk",
        help="nngp, ntk, or nngp,ntk (default ntk); with both, the files are "
        "OUT.nngp.npy and OUT.ntk.npy",
    )
    kernel.add_argument("--out", type=Path, required=True, metavar="K.npy")
    kernel.add_argument(
        "--mask-constant",
        type=float,
        default=None,
        help="input entries equal to it (nan: NaN entries) are masked",
    )
    kernel.add_argument(
        "--tile",
        type=int,
        default=None,
        help="stream the kernel in tiles of this side into --out as they arrive "
        "(default: only kernels over 32 MiB are streamed, in tiles the server picks)",
    )
    kernel.add_argument("--pattern1", type=Path, default=None, metavar="P1.npy")
    kernel.add_argument("--pattern2", type=Path, default=None, metavar="P2.npy")
    ls = commands.add_parser("ls", parents=[common], help="list the registered architectures")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    show = commands.add_parser(
        "show", parents=[common], help="print a registered architecture as JSON"
    )
    show.add_argument("architecture_id", metavar="ID")
    cli_models.add(commands, common)
    return parser


def _kinds(text: str) -> tuple[str, ...]:
    """--get's comma-separated names, parsed as `ntkserve.kinds` parses a Python `get`."""
    try:
        return kinds.from_names([k.strip().lower() for k in text.split(",") if k.strip()])
    except kinds.KindError as e:
        raise UsageError(f"--get {text!r}: {e.problem}") from None


def _register(args: argparse.Namespace) -> None:
    arch = architecture(args.arch)
    with client(args) as connected:
        print(connected.register(arch))


def _kernel(args: argparse.Namespace) -> None:
    names = _kinds(args.get)
    args.out = writable(args.out)
    arch = architecture_or_id(args.arch)
    x1 = array(args.x1)
    x2 = array(args.x2)
    assert x1 is not None
    patterns = (array(args.pattern1), array(args.pattern2))
    pattern = None if patterns == (None, None) else patterns
    n1 = int(x1.shape[0]) if x1.ndim else 1
    n2 = n1 if x2 is None else int(x2.shape[0]) if x2.ndim else 1
    # A kernel too large to hold comfortably is streamed straight into the .npy file.
    stream_to_file = (
        args.tile is not None or n1 * n2 * len(names) * x1.dtype.itemsize > STREAM_THRESHOLD_BYTES
    )
    get: str | tuple[str, ...] = names[0] if len(names) == 1 else names
    with client(args) as connected:
        result = connected.kernel(
            arch,
            x1,
            x2,
            get=get,
            tile=args.tile,
            out=args.out if stream_to_file else None,
            mask_constant=args.mask_constant,
            pattern=pattern,
        )
    paths = output_paths(args.out, names, single=len(names) == 1)
    if not stream_to_file:
        kernels = (result,) if len(names) == 1 else result
        for path, k in zip(paths, kernels, strict=True):
            np.save(path, k)
    for path in paths:
        print(path)


def _ls(args: argparse.Namespace) -> None:
    with client(args) as connected:
        records = connected.list_architectures()
    for info in records:
        layers = [layer.WhichOneof("layer") or "?" for layer in info.architecture.layers]
        created = datetime.datetime.fromtimestamp(info.create_time, datetime.UTC)
        if args.json:
            row = {
                "id": info.id,
                "created": created.isoformat(timespec="seconds"),
                "layers": layers,
            }
            print(json.dumps(row))
        else:
            summary = " > ".join(layers)
            if len(summary) > LAYERS_WIDTH:
                summary = summary[: LAYERS_WIDTH - 3].rsplit(" > ", 1)[0] + " > ..."
            print(f"{info.id}  {created:%Y-%m-%dT%H:%M:%SZ}  {len(layers):3d}  {summary}")


def _show(args: argparse.Namespace) -> None:
    with client(args) as connected:
        info = connected.get_architecture(args.architecture_id)
    print(info.architecture.to_json())


COMMANDS = {"register": _register, "kernel": _kernel, "ls": _ls, "show": _show}
COMMANDS.update(cli_models.COMMANDS)


def _serve(argv: list[str]) -> int:
    try:
        from ntkserve_server import cli as server_cli
    except ImportError:
        print(f"ntkserve: `serve` needs {SERVER_INSTALL}", file=sys.stderr)
        return 2
    server_cli.main(argv)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv)
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (UsageError, TensorError) as e:
        print(f"ntkserve {args.command}: {e}", file=sys.stderr)
        return 2
    except errors.NtkServeError as e:
        print(f"ntkserve {args.command}: {e}", file=sys.stderr)
        for field, problem in e.field_violations:
            if problem not in e.message:
                print(f"  {field}: {problem}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `ntkserve ls | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
