"""The `ntkserve` commands of served models and tuning:

    ntkserve fit --arch ARCH --x X.npy --y Y.npy [--get ntk] [--diag-reg R]   # prints the id
    ntkserve predict MODEL_ID [--x X_TEST.npy] [--t 1,10] [--get ntk]
                     [--covariance marginal] --out P.npy                       # prints paths
    ntkserve models [--json]                                                  # your models
    ntkserve tune --arch ARCH --x X.npy --y Y.npy --param PATH=LOW:HIGH [...]  # prints JSON

`--arch` is an architecture file or a registered id, as for `kernel`. `predict` writes the
mean to P.npy, or with a covariance P.mean.npy and P.covariance.npy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ntkserve.cli_support import UsageError, architecture_or_id, array, client, writable


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    fit = commands.add_parser("fit", parents=[common], help="fit a model; print its id")
    _data_flags(fit)
    fit.add_argument("--get", default="ntk", choices=("nngp", "ntk"))
    fit.add_argument("--learning-rate", type=float, default=1.0)
    fit.add_argument("--tile", type=int, default=None, help="tile side (default: the server's)")
    predict = commands.add_parser(
        "predict", parents=[common], help="predict with a fitted model into .npy files"
    )
    predict.add_argument("model_id", metavar="MODEL_ID")
    predict.add_argument("--x", type=Path, default=None, metavar="X_TEST.npy")
    predict.add_argument("--t", default=None, help="times, comma-separated (default: infinity)")
    predict.add_argument("--get", default=None, choices=("nngp", "ntk", "ntkgp"))
    predict.add_argument("--covariance", default=None, choices=("marginal", "full"))
    predict.add_argument("--out", type=Path, required=True, metavar="P.npy")
    models = commands.add_parser("models", parents=[common], help="list your fitted models")
    models.add_argument("--json", action="store_true", help="one JSON object per line")
    tune = commands.add_parser(
        "tune", parents=[common], help="maximize the marginal likelihood; print JSON"
    )
    _data_flags(tune)
    tune.add_argument("--get", default="nngp", choices=("nngp", "ntkgp"))
    tune.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="PATH=LOW:HIGH",
        help="a hyper-parameter path (or diag_reg) and its bounds; repeat for more",
    )
    tune.add_argument("--steps", type=int, default=100)
    tune.add_argument("--step-size", type=float, default=0.05)


def _data_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--arch", required=True, help="an architecture file, or a registered id")
    command.add_argument("--x", type=Path, required=True, metavar="X_TRAIN.npy")
    command.add_argument("--y", type=Path, required=True, metavar="Y_TRAIN.npy")
    command.add_argument("--diag-reg", type=float, default=0.0)
    command.add_argument(
        "--absolute", action="store_true", help="diag_reg in absolute units (default: relative)"
    )


def _data(args: argparse.Namespace) -> tuple[Any, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = array(args.x), array(args.y)
    assert x is not None and y is not None
    return architecture_or_id(args.arch), x, y


def _fit(args: argparse.Namespace) -> None:
    arch, x, y = _data(args)
    with client(args) as connected:
        model = connected.fit(
            arch, x, y, args.get, args.diag_reg, args.absolute, args.learning_rate, args.tile
        )
    for name, solve in model.info.solves.items():
        print(
            f"{name}: solved by {solve.method} (condition ~{solve.condition:.3g}); "
            f"log marginal likelihood {model.info.log_marginal_likelihood:.6g}",
            file=sys.stderr,
        )
    print(model.id)


def _times(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",")]
    except ValueError as e:
        raise UsageError(f"--t {text!r}: not comma-separated numbers") from e


def _predict(args: argparse.Namespace) -> None:
    out = writable(args.out)
    with client(args) as connected:
        model = connected.model(args.model_id)
        try:
            result = model.predict(array(args.x), _times(args.t), args.get, args.covariance)
        except ValueError as e:
            if hasattr(e, "code"):
                raise
            raise UsageError(str(e)) from e
    if args.covariance is None:
        np.save(out, result)
        print(out)
        return
    for part, values in (("mean", result.mean), ("covariance", result.covariance)):
        path = out.with_name(f"{out.stem}.{part}.npy")
        np.save(path, values)
        print(path)


def _models(args: argparse.Namespace) -> None:
    with client(args) as connected:
        infos = connected.models()
    for info in infos:
        created = datetime.datetime.fromtimestamp(info.create_time, datetime.UTC)
        row = {
            "id": info.model_id,
            "created": created.isoformat(timespec="seconds"),
            "architecture_id": info.architecture_id,
            "get": info.get,
            "n_train": info.x_train_shape[0],
            "bytes": info.stored_bytes,
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(" ".join(str(v) for v in row.values()))


def _bounds(texts: list[str]) -> dict[str, tuple[float, float]]:
    bounds = {}
    for text in texts:
        path, _, interval = text.partition("=")
        low, _, high = interval.partition(":")
        try:
            bounds[path] = (float(low), float(high))
        except ValueError as e:
            raise UsageError(f"--param {text!r}: expected PATH=LOW:HIGH") from e
    return bounds


def _tune(args: argparse.Namespace) -> None:
    arch, x, y = _data(args)
    bounds = _bounds(args.param)
    with client(args) as connected:
        tuned = connected.tune(
            arch, x, y, bounds, args.get, args.diag_reg, args.absolute, args.steps, args.step_size
        )
    result = {
        "values": tuned.values,
        "log_marginal_likelihood": tuned.log_marginal_likelihood,
        "architecture_id": tuned.architecture_id,
    }
    print(json.dumps(result))


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "fit": _fit,
    "predict": _predict,
    "models": _models,
    "tune": _tune,
}
