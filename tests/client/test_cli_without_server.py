"""`ntkserve serve` where only the client is installed says how to get the server."""

from __future__ import annotations

import sys

import pytest
from ntkserve import cli


def test_serve_without_the_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ntkserve_server", None)  # import fails as if absent
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "pip install ./client ./engine ./server" in err
    assert "pip install ntkserve-server" not in err  # not published: that would fail
