"""Stores written before the backend seam read back unchanged: the same run keys, table rows,
failures and task results (tests/data/legacy_store, made by tests/data/make_legacy_store.py at
commit 9403802 with the code of that time)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wanlab.keys import record_key_parts, run_key, unreadable_loras
from wanlab.params import Params
from wanlab.store import Store
from wanlab.tasks import read_task_result

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "legacy_expected.json").read_text())


@pytest.fixture()
def legacy(tmp_path, monkeypatch) -> Store:
    """A copy of the legacy store, and the repository root as the working folder (its LoRA is named
    by a relative path, as the sweep that made it named it)."""
    shutil.copytree(DATA / "legacy_store", tmp_path / "legacy")
    monkeypatch.chdir(DATA.parent.parent)
    return Store(tmp_path / "legacy")


def test_every_point_keys_as_it_did(pipe, legacy):
    assert pipe.fingerprint == EXPECTED["fingerprint"] and pipe.generation_settings() == EXPECTED["settings"]
    points = [Params.from_dict(p) for p in EXPECTED["sweep"]["points"]]
    accels = [None, None, "fbc", None]
    for p, accel, key, status in zip(points, accels, EXPECTED["sweep"]["keys"], EXPECTED["sweep"]["status"]):
        if status == "failed":  # its LoRA file is missing: the stand-in key its failure was recorded under
            assert run_key(pipe.key_parts(p, accel, loras=unreadable_loras(p))) == key
            assert key in legacy.failures()
        else:
            assert run_key(pipe.key_parts(p, accel)) == key
            run = legacy.get(key)
            assert run_key(record_key_parts(run.record)) == key and run.video().digest == run.digest
    assert sorted(legacy.failures()) == EXPECTED["failures"]


def test_the_table_reads_back_row_for_row(legacy):
    df = legacy.df
    old_columns = [c for c in EXPECTED["df_columns"] if c not in ("path", "mp4")]
    assert list(df.columns)[: len(CORE_PREFIX)] == CORE_PREFIX
    rows = json.loads(df[old_columns].to_json(orient="records"))
    assert rows == EXPECTED["df"]
    assert set(old_columns) <= set(df.columns) and df["exact"].all()


CORE_PREFIX = ["key", "prompt", "negative_prompt", "width", "height", "seed", "steps", "guidance_scale", "flow_shift",
               "loras", "num_frames", "model", "fingerprint", "digest", "seconds", "created", "device", "dtype",
               "accel"]


def test_the_finished_task_reads_back_as_written(legacy):
    assert read_task_result(legacy, EXPECTED["task_id"]) == EXPECTED["task_result"]
    assert EXPECTED["task_key"] in legacy


def test_the_toy_model_keys_its_runs_as_it_did_without_loading():
    """The toy's weights changed since (issue 27: the third generation); its runs are keyed by the same rule,
    so the first generation's identity gives the key it gave then."""
    import wanlab
    from wanlab.backend import IdentityBackend
    from wanlab.models.identity import ModelIdentity

    toy = wanlab.identity("toy")
    assert toy.fingerprint != EXPECTED["toy"]["fingerprint"]  # another checkpoint: other run keys
    assert toy.to_dict()["settings"] == EXPECTED["toy"]["settings"] and dict(toy.native) == EXPECTED["toy"]["native"]
    first_generation = ModelIdentity.from_dict({**toy.to_dict(), "fingerprint": EXPECTED["toy"]["fingerprint"]})
    keyer = IdentityBackend(first_generation)
    params = keyer.params(prompt=EXPECTED["toy"]["params"]["prompt"], seed=1)
    assert params.to_dict() == EXPECTED["toy"]["params"]
    assert run_key(keyer.key_parts(params)) == EXPECTED["toy"]["key"]
