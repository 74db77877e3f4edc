"""What every `ntkserve` command shares: the connection flags, the client they make, and
reading architecture files and .npy arrays (UsageError, exit status 2, for a bad one)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import json_format

from ntkserve.client import Client
from ntkserve.spec import Architecture

DEFAULT_TARGET = "localhost:50051"


class UsageError(Exception):
    """A bad argument or file: exit status 2."""


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=os.environ.get("NTKSERVE_TARGET", DEFAULT_TARGET),
        help="server host:port, or a resolver target such as dns:///ntkserve:50051 "
        f"(default $NTKSERVE_TARGET or {DEFAULT_TARGET})",
    )
    common.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="file holding the bearer token (default: $NTKSERVE_TOKEN if set)",
    )
    common.add_argument(
        "--root-certificates",
        type=Path,
        default=None,
        metavar="PEM",
        help="CA of the server's certificate: use TLS",
    )
    common.add_argument(
        "--timeout", type=positive, default=None, help="seconds per call (default: none)"
    )
    return common


def bearer_token(args: argparse.Namespace) -> str | None:
    """The bearer token: one word, from --token-file or $NTKSERVE_TOKEN (or none)."""
    where = "$NTKSERVE_TOKEN"
    text = os.environ.get("NTKSERVE_TOKEN")
    if args.token_file is not None:
        where = str(args.token_file)
        try:
            text = read_bytes(args.token_file).decode()
        except UnicodeDecodeError as e:
            raise UsageError(f"{where}: not text: {e}") from e
    if text is None or not text.strip():
        return None
    token = text.strip()
    if len(token.split()) != 1:
        raise UsageError(f"{where}: must hold the token alone (no spaces or second line)")
    return token


def client(args: argparse.Namespace) -> Client:
    token = bearer_token(args)
    roots = None if args.root_certificates is None else read_bytes(args.root_certificates)
    return Client(args.target, token=token, root_certificates=roots, timeout=args.timeout)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from e


def architecture(path: Path) -> Architecture:
    try:
        return Architecture.from_json(read_bytes(path).decode())
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: not an ntkserve.v1.Architecture in JSON: {e}") from e


def architecture_or_id(text: str) -> Architecture | str:
    """--arch: an architecture file when one exists there, else a registered id (a path that
    looks like a file but is missing is a UsageError, not an id)."""
    path = Path(text)
    if path.exists():
        return architecture(path)
    if text.endswith(".json") or os.sep in text:
        raise UsageError(f"--arch {text}: no such file (nor is it an architecture id)")
    return text


def array(path: Path | None) -> np.ndarray[Any, Any] | None:
    if path is None:
        return None
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable .npy array: {e}") from e


def writable(out: Path) -> Path:
    """OUT with the .npy suffix numpy gives it, in a folder that exists: checked before the
    server computes anything."""
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    folder = out.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"--out {out}: {folder} is not a folder this user can write to")
    return out
