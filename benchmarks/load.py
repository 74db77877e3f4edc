"""A load test of one real ntkserve server: concurrent clients send a seeded mix of valid and
deliberately invalid requests; every call must end with the status meant for it, and the
server's memory must stay flat.

    python -m benchmarks.load [--clients 32] [--requests 500] [--json] [--seed 0]

One `ntkserve serve` on loopback, two networks: FC = 2 x [Dense(256)-Relu]-Dense(1) on d=16
rows, CNN-GAP = Conv(16, 3x3, SAME)-Relu-GlobalAvgPool-Dense(1) on 6x6x2 images. Each client
thread has its own `Client` (channel) and sends requests drawn from `MIX`: ComputeKernel
(nngp or ntk, x2 None or given, small shapes), ComputeValueAndGrad, ComputeKernelBatch,
List/GetArchitecture, and 20% meant to fail: an unknown id (NOT_FOUND); a NaN input, x2's
features unlike x1's, flat rows for the CNN, and, through the raw stub, an unknown dtype or
data bytes unlike the shape (INVALID_ARGUMENT). Not timed, so no compiling is measured: one
call of each valid kind in every form, in a row; then bursts of one kernel from 3 to 32
clients at once (the batcher compiles per form and batch size) and `--warmup` calls of the
mix per client. The server's VmRSS is read every 0.25 s; growth = its median over the last
tenth of the timed run / its median over the first tenth - 1.

PASS/FAIL (exit status 1 on a FAIL): every request completed; no unexpected outcome
(RESOURCE_EXHAUSTED included); RSS growth < 10%. The server runs with its defaults but
--max-queue max(64, clients): at most --max-concurrent-jobs (8 x 4 workers = 32) calls run
and at most one per client waits, so admission control refuses nothing. `--json`: results
as JSON on stdout, the report on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.memory import RssSeries
from benchmarks.service import background_load
from benchmarks.service_report import _load
from benchmarks.service_small import _percentile
from benchmarks.service_support import KernelServer, LoadMonitor, machine, others

MIX: dict[str, tuple[float, str]] = {  # kind: (share of the mix, the status it must end with)
    "kernel": (0.45, "OK"), "value_and_grad": (0.10, "OK"), "kernel_batch": (0.10, "OK"),
    "list": (0.075, "OK"), "get": (0.075, "OK"), "unknown_id": (0.04, "NOT_FOUND"),
    "nan_input": (0.04, "INVALID_ARGUMENT"), "bad_shape": (0.04, "INVALID_ARGUMENT"),
    "bad_dtype": (0.04, "INVALID_ARGUMENT"), "bytes_mismatch": (0.04, "INVALID_ARGUMENT"),
}  # fmt: skip
Shape = tuple[int, int | None]  # (N1, N2), N2 None: x2 absent
FEATURES: dict[str, tuple[int, ...]] = {"fc": (16,), "cnn": (6, 6, 2)}
SHAPES: dict[str, list[Shape]] = {"fc": [(1, None), (4, None), (8, 5)], "cnn": [(2, None), (3, 4)]}
GETS = ("nngp", "ntk")
Form = tuple[str, Shape, str]  # network, shape, get
FORMS: list[Form] = [(a, s, g) for a, shapes in SHAPES.items() for s in shapes for g in GETS]
UNKNOWN_ID = "0123456789abcdef" * 2  # 32 hex digits like a real id, registered by no one
TIMEOUT_S = 120.0  # per call: a hung call ends as DEADLINE_EXCEEDED, an unexpected outcome
WARMUP = 50  # untimed calls of the mix per client
# Warm-up bursts: n clients send the same kernel at once; the first runs alone, the others
# gather into one batch, padded to a power of two (2 to 32): one program per form and size.
BURSTS = (3, 5, 9, 17, 32)
RSS_INTERVAL_S = 0.25
RSS_LIMIT = 0.10
RSS_MIN_SAMPLES = 4  # in each tenth of the timed run, or the growth is not judged: FAIL

Call = Callable[[Any], None]  # given the worker's Client; raises on failure


@dataclasses.dataclass(frozen=True)
class Request:
    kind: str
    call: Call


@dataclasses.dataclass(frozen=True)
class Outcome:
    kind: str
    expected: str
    observed: str
    latency_s: float
    start: float  # perf_counter


class BadResult(Exception):
    """A call that succeeded with an answer of the wrong shape or non-finite values."""


def networks() -> dict[str, Any]:
    from ntkserve import stax

    w: dict[str, Any] = {"W_std": 1.5, "b_std": 0.05}
    fc = [stax.Dense(256, **w), stax.Relu(), stax.Dense(256, **w), stax.Relu()]
    cnn = [stax.Conv(16, (3, 3), padding="SAME", **w), stax.Relu(), stax.GlobalAvgPool()]
    return {name: stax.serial(*net, stax.Dense(1, **w)) for name, net in (("fc", fc), ("cnn", cnn))}


def _x(rng: np.random.Generator, arch: str, n: int) -> np.ndarray[Any, Any]:
    return rng.standard_normal((n, *FEATURES[arch]), dtype=np.float32)


def _pair(rng: np.random.Generator, arch: str, shape: Shape) -> tuple[Any, Any]:
    return _x(rng, arch, shape[0]), None if shape[1] is None else _x(rng, arch, shape[1])


def _check(ok: bool, what: str = "an unexpected answer") -> None:
    if not ok:
        raise BadResult(what)


def _expect(value: Any, shape: tuple[int, ...]) -> None:
    array = np.asarray(value)
    _check(array.shape == shape and bool(np.isfinite(array).all()), f"{array.shape}, {shape}")


def build(kind: str, form: Form, ids: dict[str, str], rng: np.random.Generator) -> Request:
    """One request of `kind`, its inputs drawn now (so the timed part only sends them)."""
    from ntkserve.v1 import kernel_service_pb2 as ks
    from ntkserve.v1 import tensor_pb2

    arch, (n1, n2), get = form
    x1, x2 = _pair(rng, arch, (n1, n2))
    out = (n1, n1 if n2 is None else n2)
    call: Call
    if kind == "kernel":
        call = lambda c: _expect(c.kernel(ids[arch], x1, x2, get=get), out)  # noqa: E731
    elif kind == "value_and_grad":

        def call(c: Any) -> None:
            k, (g1, _) = c.value_and_grad(ids[arch], x1, x2, get=get)
            _expect(k, out)
            _expect(g1, x1.shape)

    elif kind == "kernel_batch":  # one item of each shape of the network (no new forms)
        pairs = [_pair(rng, arch, s) for s in SHAPES[arch]]
        outs = [(a, a if b is None else b) for a, b in SHAPES[arch]]

        def call(c: Any) -> None:
            for k, s in zip(c.kernel_batch(ids[arch], pairs, get=get), outs, strict=True):
                _expect(k, s)

    elif kind == "list":
        call = lambda c: _check(len(c.list_architectures()) == len(ids))  # noqa: E731
    elif kind == "get":
        call = lambda c: _check(c.get_architecture(ids[arch]).id == ids[arch])  # noqa: E731
    elif kind == "unknown_id":
        call = lambda c: c.kernel(UNKNOWN_ID, x1, x2, get=get)  # noqa: E731
    elif kind == "nan_input":
        x1[rng.integers(n1)].flat[0] = np.nan
        call = lambda c: c.kernel(ids[arch], x1, x2, get=get)  # noqa: E731
    elif kind == "bad_shape":  # fc: x2 one feature short of x1; cnn: flat rows, no image
        x1, x2 = (x1, x1[:, :-1]) if arch == "fc" else (_x(rng, "fc", n1), None)
        call = lambda c: c.kernel(ids[arch], x1, x2, get=get)  # noqa: E731
    elif kind in ("bad_dtype", "bytes_mismatch"):  # the raw stub: the Client refuses these
        # float32 (N1, 16) needs 64 * N1 bytes. bad_dtype: the right bytes, dtype
        # DTYPE_UNSPECIFIED or a code no Dtype has; bytes_mismatch: 4 bytes too few or many.
        codes: list[Any] = [tensor_pb2.DTYPE_UNSPECIFIED, 7, tensor_pb2.DTYPE_FLOAT32]
        bad = kind == "bad_dtype"
        raw = ks.ComputeKernelRequest(architecture_id=ids["fc"], get=[ks.KERNEL_KIND_NTK])
        raw.x1.dtype = codes[int(rng.integers(2)) if bad else 2]
        raw.x1.shape[:] = [n1, 16]
        raw.x1.data = bytes(64 * n1 + (0 if bad else int(rng.choice([-4, 4]))))
        call = lambda c: c._stub.ComputeKernel(raw, timeout=TIMEOUT_S)  # noqa: E731
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return Request(kind, call)


def plan(ids: dict[str, str], seed: int, worker: int, count: int) -> list[Request]:
    """`count` requests of the mix for one worker, from its own seeded generator."""
    rng = np.random.default_rng([seed, worker])
    shares = np.array([share for share, _ in MIX.values()])
    kinds = rng.choice(list(MIX), size=count, p=shares / shares.sum())
    return [build(str(k), FORMS[int(rng.integers(len(FORMS)))], ids, rng) for k in kinds]


def run_one(request: Request, client: Any) -> Outcome:
    """Sends one request; its outcome: OK, the gRPC status's name, BAD_RESULT, CLIENT:<error>."""
    from ntkserve.errors import NtkServeError

    start = time.perf_counter()
    try:
        request.call(client)
        observed = "OK"
    except NtkServeError as e:
        observed = e.code.name
    except grpc.RpcError as e:
        observed = e.code().name if isinstance(e, grpc.Call) else "UNKNOWN"
    except BadResult:
        observed = "BAD_RESULT"
    except Exception as e:
        observed = f"CLIENT:{type(e).__name__}"
    end = time.perf_counter()
    return Outcome(request.kind, MIX[request.kind][1], observed, end - start, start)


def run_load(target: str, args: argparse.Namespace, monitor: LoadMonitor) -> dict[str, Any]:
    """Registers the networks, warms up, runs the timed mix: every outcome, the warm-up's
    seconds, and what other processes took of the machine during the timed part."""
    from ntkserve import Client

    t0 = time.perf_counter()
    with Client(target, timeout=TIMEOUT_S) as client:
        ids = {name: client.register(net) for name, net in networks().items()}
        rng = np.random.default_rng(0)
        forms = [build(k, f, ids, rng) for k in MIX if MIX[k][1] == "OK" for f in FORMS]
        for outcome in (run_one(r, client) for r in forms):
            if outcome.observed != "OK":
                raise RuntimeError(f"warm-up {outcome.kind} answered {outcome.observed}")
    t1 = time.perf_counter()
    plans = [plan(ids, args.seed, k, args.warmup + args.requests) for k in range(args.clients)]
    outcomes: list[list[Outcome]] = [[] for _ in plans]
    errors: list[BaseException] = []
    marks = []  # the barrier's action: time and CPU use when the timed part starts
    bursts = threading.Barrier(len(plans))
    barrier = threading.Barrier(len(plans), action=lambda: marks.append(monitor.mark()))

    def worker(k: int) -> None:
        rng = np.random.default_rng([args.seed, k, 1])
        try:
            with Client(target, timeout=TIMEOUT_S) as client:
                for request in [build("kernel", form, ids, rng) for form in FORMS]:
                    for n in BURSTS:
                        bursts.wait()
                        if k < n:
                            run_one(request, client)
                for request in plans[k][: args.warmup]:
                    run_one(request, client)
                barrier.wait()
                outcomes[k] = [run_one(r, client) for r in plans[k][args.warmup :]]
        except BaseException as e:
            errors.append(e)
            bursts.abort()
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    flat = [o for per in outcomes for o in per]
    return {
        "outcomes": flat,
        "start": min(o.start for o in flat),
        "end": max(o.start + o.latency_s for o in flat),
        "load": others(marks[0], monitor.mark()),
        "warm_forms_s": t1 - t0,
        "warm_concurrent_s": marks[0].wall - t1,
    }


def _latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "count": len(values),
        **{f"p{q}_ms": _percentile(values, q) * 1e3 for q in (50, 99)},
        "max_ms": max(values) * 1e3,
    }


def summarize(ran: dict[str, Any], rss: RssSeries) -> dict[str, Any]:
    """Counts and latencies by (kind, observed status) and by kind, throughput, server RSS."""
    outcomes: list[Outcome] = ran.pop("outcomes")
    start, end = ran["start"], ran["end"]
    groups: dict[tuple[str, str, str], list[float]] = {}
    for o in sorted(outcomes, key=lambda o: (list(MIX).index(o.kind), o.observed)):
        groups.setdefault((o.kind, o.expected, o.observed), []).append(o.latency_s)
    first, first_n = rss.median(start, start + (end - start) / 10)
    last, last_n = rss.median(end - (end - start) / 10, end)
    return ran | {
        "requests": len(outcomes),
        "wall_s": end - start,
        "rps": len(outcomes) / (end - start),
        "unexpected": sum(o.observed != o.expected for o in outcomes),
        "latency": _latency([o.latency_s for o in outcomes]),
        "by_status": [
            {"kind": k, "expected": e, "observed": s, **_latency(v)}
            for (k, e, s), v in groups.items()
        ],
        "by_kind": {
            k: _latency([x for (kind, _, _), v in groups.items() if kind == k for x in v])
            for k in dict.fromkeys(kind for kind, _, _ in groups)
        },
        "slowest": [
            (o.kind, o.latency_s, o.start - start)
            for o in sorted(outcomes, key=lambda o: -o.latency_s)[:5]
        ],
        "rss_first_tenth_bytes": first,
        "rss_last_tenth_bytes": last,
        "rss_samples": [first_n, last_n],
        "rss_growth": last / first - 1,
        "rss_peak_bytes": max(v for _, v in rss.samples),
        "rss_mib": [(round(t - start, 2), v / 2**20) for t, v in rss.samples],
    }


def report(r: dict[str, Any]) -> tuple[str, bool]:
    """The text report (it also puts the checks into `r`) and whether every check passed."""
    m, s, lat, mib = r["machine"], r["summary"], r["summary"]["latency"], 2**20
    head = f"   {'kind':<16}{'expected':<18}{'observed':<18}{'count':>6}"
    lines = [
        f"machine: {m['cpu']}, {m['cpus']} cpus; python {m['python']}, grpcio {m['grpcio']}, "
        f"jax {m['jax']}; server and clients share the cpus, loopback gRPC; before the start "
        f"other processes kept {r['background_fraction']:.0%} of the machine busy",
        f"server: ntkserve serve {' '.join(r['server_flags'])} (other flags default); "
        f"{r['clients']} client threads x {r['requests']} requests (seed {r['seed']}); warm-up "
        f"not timed: every valid form in a row {s['warm_forms_s']:.1f} s, then bursts and "
        f"{r['warmup']} calls per client {s['warm_concurrent_s']:.1f} s",
        f"timed: {s['requests']} requests in {s['wall_s']:.1f} s = {s['rps']:.0f} req/s; latency "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms {_load(s['load'])}",
        "",
        f"{head}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    for g in [*s["by_status"], {"kind": "all", "expected": "", "observed": "", **lat}]:
        flag = "   <-- UNEXPECTED" if g["observed"] != g["expected"] else ""
        lines.append(
            f"   {g['kind']:<16}{g['expected']:<18}{g['observed']:<18}{g['count']:>6}"
            f"{g['p50_ms']:>9.1f}{g['p99_ms']:>9.1f}{g['max_ms']:>9.0f}{flag}"
        )
    slowest = ", ".join(f"{k} {x * 1e3:.0f} ms at {t:.1f} s" for k, x, t in s["slowest"])
    growth, samples = s["rss_growth"], s["rss_samples"]
    lines += [
        f"   slowest: {slowest} (seconds into the timed run)",
        "",
        f"server VmRSS every {RSS_INTERVAL_S} s: median {s['rss_first_tenth_bytes'] / mib:.0f} MiB"
        f" over the first tenth of the timed run, {s['rss_last_tenth_bytes'] / mib:.0f} MiB over"
        f" the last; peak {s['rss_peak_bytes'] / mib:.0f} MiB",
        "",
    ]
    want = r["clients"] * r["requests"]
    checks = [
        (s["requests"] == want, f"completed: {s['requests']} of {want} requests"),
        (s["unexpected"] == 0, f"unexpected outcomes: {s['unexpected']} (must be 0)"),
        (
            growth < RSS_LIMIT and min(samples) >= RSS_MIN_SAMPLES,
            f"server RSS growth: {growth:+.1%} (must be < {RSS_LIMIT:.0%}, from at least "
            f"{RSS_MIN_SAMPLES} samples per tenth: {samples})",
        ),
    ]
    r["checks"] = {text: ok for ok, text in checks}
    lines += [f"{'PASS' if ok else 'FAIL'}  {text}" for ok, text in checks]
    return "\n".join(lines), all(ok for ok, _ in checks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32, help="client threads, one channel each")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per client")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed requests per client")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    args = parser.parse_args(argv)
    flags = ["--max-queue", str(max(64, args.clients))]
    results: dict[str, Any] = {
        "machine": machine(),
        "background_fraction": background_load(),
        "server_flags": flags,
        **{k: getattr(args, k) for k in ("clients", "requests", "warmup", "seed")},
    }
    with (
        tempfile.TemporaryDirectory(prefix="ntkserve-load-") as tmp,
        LoadMonitor() as monitor,
        KernelServer(Path(tmp) / "data", *flags) as server,
        RssSeries(server.pid, RSS_INTERVAL_S) as rss,
    ):
        ran = run_load(server.target, args, monitor)
    results["summary"] = summarize(ran, rss)
    text, ok = report(results)
    print(text, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
