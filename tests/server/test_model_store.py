"""The model store on a real SQLite file and directory: a crash before a model's commit
leaves nothing behind once the store is opened again (at its first use), and a committed
model stays; a store that cannot be opened reads as empty and refuses writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ntkserve.v1 import model_service_pb2 as ms
from ntkserve_server.model_store import ModelStore, ModelStoreFull, UnknownModel

MODEL = "model-" + "a" * 32


def _stage(staged: Path) -> None:
    np.save(staged / "nngp.npy", np.eye(3))


def test_only_committed_models_survive_a_crash(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with store.staging() as staged:
        _stage(staged)
        store.commit("t", MODEL, ms.ModelRecord(model_id=MODEL), staged)
    # What a crash leaves: a staging directory, and a model renamed into place whose row
    # was never committed.
    (tmp_path / ".staging-crashed").mkdir()
    (tmp_path / ".staging-crashed" / "nngp.npy").write_bytes(b"half")
    orphan = tmp_path / ("model-" + "b" * 32)
    orphan.mkdir()
    store.close()
    reopened = ModelStore(tmp_path)
    assert [r.model_id for r in reopened.list("t")] == [MODEL]  # first use: opened, cleaned
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [MODEL]
    found = reopened.get("t", MODEL)
    assert found.record.stored_bytes == (tmp_path / MODEL / "nngp.npy").stat().st_size
    np.testing.assert_array_equal(found.arrays()["nngp"], np.eye(3))
    with pytest.raises(UnknownModel):
        reopened.get("other tenant", MODEL)
    reopened.delete("t", MODEL)
    assert not (tmp_path / MODEL).exists()
    reopened.close()


def test_the_byte_budget_refuses_with_the_numbers(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, max_bytes=1000)
    store.check_room(1000)
    with pytest.raises(ModelStoreFull, match=r"1001 bytes and stored models take 0.*1000"):
        store.check_room(1001)
    store.close()


def test_a_store_that_cannot_be_opened_is_empty_and_refuses_writes(tmp_path: Path) -> None:
    """Where the store's directory cannot be made (a file stands in its way here; a full
    disk in the hostile disk test), reads find nothing and a fit is refused, saying why."""
    blocker = tmp_path / "models"
    blocker.write_text("not a directory")
    store = ModelStore(blocker)
    assert store.list("t") == [] and store.find("t", MODEL) is None
    with pytest.raises(UnknownModel):
        store.get("t", MODEL)
    with pytest.raises(ModelStoreFull, match="cannot be opened"), store.staging():
        pass
