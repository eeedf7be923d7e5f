"""The run store: keys, atomic runs, the index, failures, and several processes writing at once."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import wanlab
from tests.helpers import key_for, record_key
from wanlab import LoRAError, ParamError, Params, WanlabError
from wanlab.keys import record_key_parts
from wanlab.store import RunNotFoundError, Store

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a paper boat drifting down a rain gutter"

#: Builds a stored-looking Video without torch (frames of noise, a record shaped like generate's),
#: so that subprocess writers start in a fraction of a second. Used in-process and in children.
FAKE = textwrap.dedent('''
    import numpy as np
    from wanlab.params import Params
    from wanlab.video import Video

    def fake_video(seed, frames=5, size=32, guidance_scale=5.0):
        rng = np.random.default_rng(seed)
        p = Params(prompt="noise", seed=seed, width=size, height=size, num_frames=frames, steps=2,
                   guidance_scale=guidance_scale)
        model = {"id": "fake", "fingerprint": "f" * 64, "source": "builtin"}
        record = {"params": p.to_dict(), "model": model, "settings": {"dtype": "float32", "max_sequence_length": 16},
                  "accel": {"cache": "none"}, "loras": [], "environment": {"torch_threads": 1, "device": "cpu"},
                  "created": "2026-01-01T00:00:00+0000"}
        frames = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
        return Video(frames, params=p, model=model, timings={"total": 0.5}, record=record)
''')
_namespace: dict = {}
exec(FAKE, _namespace)
fake_video = _namespace["fake_video"]


def _child(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", FAKE + textwrap.dedent(script), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _visible_temp(store: Store) -> list[Path]:
    return [p for p in store.path.iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture(scope="module")
def real_run(pipe, tmp_path_factory):
    """One real generation from the tiny model, stored."""
    store = Store(tmp_path_factory.mktemp("store"))
    params = Params(prompt=PROMPT, seed=21, width=32, height=32, num_frames=5, steps=2)
    video = pipe.generate(params)
    return store, video, store.put(video)


# --- keys --------------------------------------------------------------------------------------------
def test_key_before_generating_equals_key_of_the_result(pipe, real_run):
    store, video, run = real_run
    assert key_for(pipe, video.params) == record_key(video) == run.key
    assert record_key(run.record) == run.key  # also after the JSON round trip
    assert run.path == store.path / run.key and run.record["key"] == run.key


def test_key_needs_a_resolved_seed(pipe):
    with pytest.raises(ParamError, match="seed"):
        key_for(pipe, Params(prompt=PROMPT))


def test_key_covers_generation_settings_not_environment(real_run):
    _, video, _ = real_run
    record = video.to_record()
    key = record_key(record)
    same = json.loads(json.dumps(record))
    same["environment"] = {"torch_threads": 99, "versions": {"torch": "0"}}
    same["timings"], same["created"] = {"total": 123.0}, "yesterday"
    assert record_key(same) == key
    for path, value in [(("params", "guidance_scale"), 4.0), (("params", "seed"), 22),
                        (("settings", "max_sequence_length"), 16), (("settings", "dtype"), "bfloat16"),
                        (("accel", "cache"), "first_block"), (("model", "fingerprint"), "0" * 64)]:
        changed = json.loads(json.dumps(record))
        changed[path[0]][path[1]] = value
        assert record_key(changed) != key, path


def test_lora_files_are_keyed_by_content_and_scale(pipe, lora_files, tmp_path):
    params = Params(prompt=PROMPT, seed=3, width=32, height=32, num_frames=5, steps=2,
                    loras=[(str(lora_files["diffusers"]), 0.5)])
    copy = tmp_path / "renamed.safetensors"
    shutil.copy(lora_files["diffusers"], copy)
    key = key_for(pipe, params)
    assert key_for(pipe, params.replace(loras=[(str(copy), 0.5)])) == key
    assert key_for(pipe, params.replace(loras=[(str(copy), 0.7)])) != key
    assert key_for(pipe, params.replace(loras=[(str(lora_files["other"]), 0.5)])) != key
    parts = record_key_parts({"params": params.to_dict(), "model": pipe.model_info, "settings": {}, "accel": {},
                              "loras": pipe.loras.describe(params.loras)})
    assert parts["params"]["loras"][0]["sha256"] == pipe.loras.describe(params.loras)[0]["sha256"]
    with pytest.raises(LoRAError, match="no such LoRA file"):
        key_for(pipe, params.replace(loras=[str(tmp_path / "missing.safetensors")]))


# --- runs --------------------------------------------------------------------------------------------
def test_run_holds_exact_frames_mp4_and_full_record(real_run):
    store, video, run = real_run
    assert store.has(run.key) and run.key in store and len(store) == 1
    assert sorted(p.name for p in run.path.iterdir()) == ["record.json", "video.lossless.mkv", "video.mp4"]
    back = run.video()
    assert np.array_equal(back.frames, video.frames) and back.digest == video.digest == run.digest
    assert back.params == video.params == run.params and run.mp4.stat().st_size > 0
    assert video.path == run.mp4  # the caller's video now points at its stored copy
    rec = run.record
    env = rec["environment"]
    assert rec["params"]["seed"] == 21 and rec["model"]["id"] == "tiny" and len(rec["model"]["fingerprint"]) == 64
    assert rec["settings"]["dtype"] == "float32" and rec["settings"]["max_sequence_length"] == 512
    assert env["device"] == "cpu" and env["torch_threads"] >= 1 and env["platform"] and env["python"]
    assert {"torch", "diffusers", "transformers", "peft", "numpy", "wanlab"} <= set(env["versions"])
    assert rec["accel"] == {"cache": "none"} and rec["loras"] == [] and rec["created"]
    assert rec["digest"] == video.digest and rec["timings"]["total"] > 0 and rec["shape"] == [5, 32, 32, 3]
    assert os.stat(run.path).st_mode & 0o755 == 0o755 and os.stat(run.path / "record.json").st_mode & 0o644 == 0o644


def test_putting_the_same_key_again_returns_the_existing_run(real_run):
    store, video, run = real_run
    again = store.put(video, metrics={"sharpness": 1.5})
    assert again == run and len(store) == 1 and not _visible_temp(store)
    assert store.get(run.key).metrics["sharpness"] == 1.5
    store.put_metrics(run.key, {"flow_magnitude": np.float32(0.25)})
    assert run.metrics == {"sharpness": 1.5, "flow_magnitude": 0.25}  # merged; numpy became a float
    store.put_metrics(run.key, {"flow_magnitude": 0.5}, replace=True)
    assert run.metrics == {"flow_magnitude": 0.5}


def test_get_finds_unique_prefixes_and_says_clearly_what_is_missing(real_run, tmp_path):
    store, _, run = real_run
    assert store.get(run.key[:8]) == run
    with pytest.raises(RunNotFoundError, match=f"no run '0000000000000000' in store {store.path}") as info:
        store.get("0" * 16)
    assert isinstance(info.value, KeyError) and isinstance(info.value, WanlabError)
    with pytest.raises(KeyError, match="hex digits"):
        store.get("../etc")
    assert not store.has("../etc") and not Store(tmp_path / "nothing").has(run.key)
    assert len(Store(tmp_path / "nothing")) == 0 and Store(tmp_path / "nothing").df.empty
    assert not (tmp_path / "nothing").exists()  # reading does not create a store


def test_find_and_df(tmp_path):
    store = Store(tmp_path / "s")
    runs = {(seed, g): store.put(fake_video(seed, guidance_scale=g), metrics={"flow_magnitude": seed * 0.5},
                                 extra={"sweep": "demo"})
            for seed in (1, 2) for g in (3.0, 5.0)}
    assert len(store) == 4
    assert {r.key for r in store.find(seed=1)} == {runs[1, 3.0].key, runs[1, 5.0].key}
    assert store.find(seed=2, guidance_scale=3) == [runs[2, 3.0]]  # 3 matches 3.0
    assert len(store.find(guidance_scale=[3.0, 5.0], seed=[1, 2])) == 4
    assert len(store.find(model="fake")) == 4 and len(store.find(model="f" * 12)) == 4
    assert store.find(model="tiny") == [] and store.find(seed=9) == [] and store.find(loras=[]) != []
    with pytest.raises(ParamError, match="colour"):
        store.find(colour="red")
    df = store.df
    assert len(df) == 4 and df["key"].is_unique
    assert list(df.columns[:18]) == ["key", *Params.field_names(), "model", "fingerprint", "digest", "seconds",
                                     "created", "device", "dtype"]
    assert {"path", "mp4", "flow_magnitude", "sweep"} <= set(df.columns)
    row = df.set_index("key").loc[runs[2, 5.0].key]
    assert row["seed"] == 2 and row["guidance_scale"] == 5.0 and row["loras"] == "" and row["model"] == "fake"
    assert row["flow_magnitude"] == 1.0 and row["seconds"] == 0.5 and row["sweep"] == "demo"
    assert Path(row["mp4"]).is_file() and Path(row["path"]) == runs[2, 5.0].path
    store.put_metrics(runs[2, 5.0].key, {"warp_error": 0.1})
    assert store.df.set_index("key").loc[runs[2, 5.0].key, "warp_error"] == 0.1
    assert {r.key for r in store.runs()} == {r.key for r in runs.values()}


def test_index_is_rebuilt_when_missing_damaged_or_stale(tmp_path):
    store = Store(tmp_path / "s")
    runs = [store.put(fake_video(seed), metrics={"m": seed}) for seed in range(3)]
    before = store.df
    index = store.path / "index.sqlite"
    index.unlink()
    assert store.df.equals(before)
    index.write_bytes(b"this is not a database" * 100)
    assert store.df.equals(before)
    assert store.rebuild_index() == 3
    shutil.rmtree(runs[0].path)  # removed by hand
    (runs[1].path / "metrics.json").write_text(json.dumps({"m": 41}))  # edited by hand
    df = store.df.set_index("key")
    assert set(df.index) == {runs[1].key, runs[2].key}
    assert df.loc[runs[1].key, "m"] == 41 and len(store) == 2
    shutil.copytree(runs[2].path, tmp_path / "elsewhere")
    shutil.rmtree(runs[2].path)
    shutil.copytree(tmp_path / "elsewhere", runs[2].path)  # copied back in by hand
    assert set(store.df["key"]) == {runs[1].key, runs[2].key}


def test_failures_are_kept_until_the_key_succeeds(tmp_path):
    store = Store(tmp_path / "s")
    video = fake_video(7)
    key = record_key(video)
    store.put_failure(key, video.params, "LoRAError: no such LoRA file: x.safetensors", extra={"sweep": "demo"})
    assert not store.has(key) and len(store) == 0
    failure = store.failures()[key]
    assert failure["error"].startswith("LoRAError") and failure["params"]["seed"] == 7
    assert failure["extra"] == {"sweep": "demo"}
    store.put(video)
    assert store.failures() == {} and not (store.path / "failures" / f"{key}.json").exists()
    with pytest.raises(ValueError, match="hex digits"):
        store.put_failure("../x", video.params, "boom")


def test_store_and_verify_are_exported():
    assert wanlab.Store is Store and callable(wanlab.verify)


# --- processes -------------------------------------------------------------------------------------------
WRITER = '''
    import sys
    from wanlab.store import Store
    store = Store(sys.argv[1])
    for seed in range(int(sys.argv[2]), int(sys.argv[3])):
        run = store.put(fake_video(seed, frames=int(sys.argv[4]), size=int(sys.argv[5])))
        if len(sys.argv) > 6:
            store.put_metrics(sys.argv[6], {"from_" + sys.argv[2]: seed})
        print(seed, flush=True)
'''


def test_sigkill_in_the_middle_of_a_write_leaves_no_partial_run(tmp_path):
    store = Store(tmp_path / "s")
    for attempt in range(3):  # the kill must land inside a write: retried in the rare case it does not
        child = _child(WRITER, str(store.path), str(1000 * attempt), str(1000 * attempt + 500), "17", "64")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(store) < 2 * (attempt + 1):
            time.sleep(0.01)
        while time.monotonic() < deadline and not any(any(p.iterdir()) for p in _visible_temp(store)):
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if any(_visible_temp(store)):
            break
    assert _visible_temp(store), "the writer was never caught in the middle of a write"
    runs = list(store.runs())
    assert len(runs) == len(store) >= 2 and all(not r.key.startswith(".") for r in runs)
    for run in runs:  # every visible run is whole: exact frames matching the recorded digest
        assert run.video().digest == run.digest and run.mp4.stat().st_size > 0
    assert len(store.df) == len(runs)
    after = store.put(fake_video(999_999, frames=17, size=64))  # the next write succeeds
    assert store.has(after.key) and len(store) == len(runs) + 1
    store.index.clean_temp(max_age=0)  # left-overs of killed writers are cleaned (rebuild_index: after an hour)
    assert not _visible_temp(store) and len(store) == len(runs) + 1


def test_two_writer_processes_lose_nothing(tmp_path):
    store = Store(tmp_path / "s")
    shared = store.put(fake_video(10_000))  # both children add their own metric to this run
    a = _child(WRITER, str(store.path), "0", "8", "5", "32", shared.key)
    b = _child(WRITER, str(store.path), "4", "12", "5", "32", shared.key)  # seeds 4..7 race for the same keys
    for child in (a, b):
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert len(store) == 13 and not _visible_temp(store)
    df = store.df
    assert len(df) == 13 and df["key"].is_unique and sorted(df["seed"]) == [*range(12), 10_000]
    for run in store.runs():
        assert run.video().digest == run.digest
    assert shared.metrics == {"from_0": 7, "from_4": 11}  # concurrent metric merges lose nothing
    (store.path / "index.sqlite").unlink()
    assert len(store.df) == 13


def test_a_folder_that_is_not_a_whole_run_is_never_a_run(tmp_path):
    store = Store(tmp_path / "s")
    video = fake_video(3)
    junk = store.path / record_key(video)
    junk.mkdir(parents=True)
    (junk / "video.mp4").write_bytes(b"half")
    assert not store.has(junk.name) and len(store) == 0 and store.df.empty
    with pytest.raises(WanlabError, match="not a whole run"):
        store.put(video)


def test_key_for_a_per_call_acceleration_setting(pipe, tmp_path):
    params = Params(prompt=PROMPT, seed=31, width=32, height=32, num_frames=5, steps=3)
    video = pipe.generate(params, accel="fbc")
    assert key_for(pipe, params, accel="fbc") == record_key(video) == Store(tmp_path).put(video).key
    assert key_for(pipe, params, accel="fbc") != key_for(pipe, params) == key_for(pipe, params, accel="exact")


def test_runs_with_damaged_files_or_records_are_listed_with_a_status_and_reason(pipe, tmp_path):
    store = Store(tmp_path / "store")
    runs = [store.put(pipe.generate(Params(prompt="a fox", seed=s, width=32, height=32, num_frames=5, steps=1)))
            for s in (1, 2, 3, 4)]
    df = store.df.set_index("key")
    assert list(df["status"]) == ["stored"] * 4 and df["reason"].isna().all()
    record = runs[0].record
    assert record["stored"]["video.mp4"]["bytes"] == runs[0].mp4.stat().st_size and len(
        record["stored"]["video.lossless.mkv"]["sha256"]) == 64
    (runs[1].path / "video.lossless.mkv").unlink()
    mp4 = runs[2].mp4.read_bytes()
    runs[2].mp4.write_bytes(mp4[:100])
    (runs[3].path / "record.json").write_text("{ not json")
    df = store.df.set_index("key")
    assert len(df) == 4  # nothing dropped
    assert df.loc[runs[0].key, "status"] == "stored"
    assert df.loc[runs[1].key, "status"] == "damaged"
    assert df.loc[runs[1].key, "reason"] == "video.lossless.mkv is missing"
    assert "video.mp4 is 100 bytes; the record says" in df.loc[runs[2].key, "reason"]
    assert df.loc[runs[3].key, "status"] == "damaged" and "record cannot be read" in df.loc[runs[3].key, "reason"]
