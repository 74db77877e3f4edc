"""FieldError, in process: (field, problem) pairs as data, re-homed by within/renamed with the
class, the attributes and the message following; copies and pickles keep the pairs."""

from __future__ import annotations

import copy
import pickle

import pytest
from ntkserve import tensor
from ntkserve.field_errors import FieldError


class _Tagged(FieldError):
    """A subclass with its own constructor and an attribute of its own."""

    def __init__(self, tag: str) -> None:
        super().__init__("x1.shape", "is bad")
        self.tag = tag


def test_one_violation_is_its_field_and_problem() -> None:
    error = FieldError("x1.shape", "must have rank >= 2")
    assert error.violations == (("x1.shape", "must have rank >= 2"),)
    assert (error.field, error.problem) == ("x1.shape", "must have rank >= 2")
    assert str(error) == "x1.shape: must have rank >= 2"


def test_several_violations_and_a_whole_request_one() -> None:
    error = FieldError.of([("get[0]", "unknown"), ("", "the request is too large")])
    assert str(error) == "get[0]: unknown; the request is too large"
    with pytest.raises(ValueError, match="at least one"):
        FieldError.of([])


def test_within_prefixes_every_field_and_keeps_the_class() -> None:
    error = _Tagged("kept").within("requests[2]")
    assert type(error) is _Tagged and error.tag == "kept"
    assert error.violations == (("requests[2].x1.shape", "is bad"),)
    assert str(error) == "requests[2].x1.shape: is bad"
    whole = FieldError.of([("", "too large"), ("x2", "bad")]).within("requests[0]")
    assert whole.violations == (("requests[0]", "too large"), ("requests[0].x2", "bad"))


def test_within_leaves_the_original_alone() -> None:
    error = FieldError("x1", "bad")
    error.within("requests[1]").within("batch")
    assert error.violations == (("x1", "bad"),) and str(error) == "x1: bad"
    assert error.within("a").within("b").field == "b.a.x1"


def test_renamed_maps_each_path() -> None:
    error = FieldError.of([("x1.dtype", "bad"), ("mask_constant", "bad")])
    renamed = error.renamed(lambda path: path.replace("x1", "inputs[X1]"))
    assert [f for f, _ in renamed.violations] == ["inputs[X1].dtype", "mask_constant"]


def test_copies_and_pickles_keep_the_pairs() -> None:
    error = _Tagged("t").within("requests[3]")
    for again in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert type(again) is _Tagged and again.tag == "t"
        assert again.violations == error.violations and str(again) == str(error)


def test_the_tensor_codec_raises_field_errors() -> None:
    with pytest.raises(FieldError) as info:
        tensor.wire_dtype(99, "x1.dtype")
    assert isinstance(info.value, tensor.TensorError)
    assert info.value.field == "x1.dtype" and "unsupported dtype" in info.value.problem
    assert info.value.within("requests[0]").field == "requests[0].x1.dtype"
