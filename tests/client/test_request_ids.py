"""ntkserve.request_ids: the one rule for x-request-id, used by the client and the server."""

from __future__ import annotations

import pytest
from ntkserve import Client, request_ids


@pytest.mark.parametrize("value", ["job-42", "a" * 128, "tenant/run:7+x=y_z.1"])
def test_valid_ids(value: str) -> None:
    assert request_ids.is_valid(value)


@pytest.mark.parametrize("value", ["", "a" * 129, "two words", 'quo"te', "line\nbreak", 42, None])
def test_invalid_ids(value: object) -> None:
    assert not request_ids.is_valid(value)


def test_made_ids_are_valid_and_fresh() -> None:
    made = {request_ids.new() for _ in range(100)}
    assert len(made) == 100 and all(request_ids.is_valid(m) for m in made)


def test_the_client_refuses_an_invalid_id_with_the_rule() -> None:
    with pytest.raises(ValueError, match="request_id: must be 1 to 128 characters"):
        Client.request_id("two words")
