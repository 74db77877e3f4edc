"""ntkserve.kinds: the one table of kernel kinds and the one parser of `get`, and the places
that use it keep their errors and field paths (the engine's: tests/engine/test_parse_get.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ntkserve import kinds
from ntkserve.v1 import kernel_service_pb2 as ks


def test_the_table_matches_the_wire_enum_and_the_response_fields() -> None:
    assert kinds.NAMES == ("nngp", "ntk")
    for name, code in kinds.CODES.items():
        assert ks.KernelKind.Name(code) == f"KERNEL_KIND_{name.upper()}"
        assert name in ks.ComputeKernelResponse.DESCRIPTOR.fields_by_name
    assert len(kinds.CODES) == len(ks.KernelKind.keys()) - 1  # all but UNSPECIFIED


@pytest.mark.parametrize(
    ("get", "names"),
    [("ntk", ("ntk",)), (("nngp", "ntk"), ("nngp", "ntk")), (["ntk", "nngp"], ("ntk", "nngp"))],
)
def test_names_parse_in_their_order(get: str | list[str], names: tuple[str, ...]) -> None:
    assert kinds.from_names(get) == names


@pytest.mark.parametrize(
    ("get", "problem"),
    [((), "name at least one"), ("svm", "unknown kernel 'svm'"), (("ntk", "ntk"), "twice")],
)
def test_bad_names_say_the_field_and_the_problem(get: str | tuple[str, ...], problem: str) -> None:
    with pytest.raises(kinds.KindError) as raised:
        kinds.from_names(get)
    assert raised.value.field == "get" and problem in raised.value.problem
    assert isinstance(raised.value, ValueError)


def test_codes_parse_and_none_means_ntk() -> None:
    assert kinds.from_codes([]) == ("ntk",)
    assert kinds.from_codes([ks.KERNEL_KIND_NTK, ks.KERNEL_KIND_NNGP]) == ("ntk", "nngp")
    assert kinds.to_codes(("nngp", "ntk")) == [ks.KERNEL_KIND_NNGP, ks.KERNEL_KIND_NTK]


@pytest.mark.parametrize(
    ("codes", "field", "problem"),
    [
        (
            [ks.KERNEL_KIND_UNSPECIFIED],
            "header.get[0]",
            "must be KERNEL_KIND_NNGP or KERNEL_KIND_NTK",
        ),
        ([ks.KERNEL_KIND_NTK, 7], "header.get[1]", "got 7"),
        (
            [ks.KERNEL_KIND_NTK, ks.KERNEL_KIND_NTK],
            "header.get[1]",
            "KERNEL_KIND_NTK is asked for twice",
        ),
    ],
)
def test_bad_codes_name_the_entry(codes: list[int], field: str, problem: str) -> None:
    with pytest.raises(kinds.KindError) as raised:
        kinds.from_codes(codes, "header.get")
    assert raised.value.field == field and problem in raised.value.problem


def test_kserve_outputs_derive_from_the_table() -> None:
    assert [kinds.output_name(n) for n in kinds.NAMES] == ["NNGP", "NTK"]


def test_kinds_imports_without_grpc() -> None:
    """The engine imports it and must run where grpc cannot be imported."""
    code = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'grpc': raise ImportError('grpc is blocked')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from ntkserve import kinds, request_ids\n"
        "assert kinds.from_names('ntk') == ('ntk',) and request_ids.is_valid('job-1')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
