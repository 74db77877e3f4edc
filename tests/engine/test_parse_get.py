"""The engine's public `KINDS` and `parse_get` are ntkserve.kinds, with the engine's error."""

from __future__ import annotations

import pytest
from ntkserve import kinds
from ntkserve_engine import KINDS, InputError, parse_get


def test_the_engine_s_parse_get_is_the_same_parser_in_its_error() -> None:
    assert KINDS == kinds.NAMES and parse_get("nngp") == ("nngp",)
    with pytest.raises(InputError) as raised:
        parse_get(("ntk", "svm"))
    assert raised.value.violations == (("get", "unknown kernel 'svm'; expected 'nngp' or 'ntk'"),)
