"""Acceleration settings: validation, records and keys, bit-identical disable, MagCache calibration, the study."""
from __future__ import annotations

import contextlib
import io
import pickle
import re

import numpy as np
import pytest

from wanlab import ParamError
from wanlab.accel import METHODS as CACHE_METHODS_SPEC
from wanlab.accel import PRESETS, Accel
from wanlab.keys import run_key
from wanlab.models import internals

CACHE_PARAMS = {name: m.params for name, m in CACHE_METHODS_SPEC.items()}

#: Enough steps for every method to skip something (TaylorSeer computes steps 0-2 in full).
STEPS = 8
CASE = dict(prompt="a red fox running through fresh snow", width=32, height=32, num_frames=5, steps=STEPS, seed=3)
#: One setting per cache method, plus the other per-call settings.
METHODS = {
    "first_block": Accel("first_block", {"threshold": 0.2}),
    "mag": Accel("mag"),
    "taylorseer": Accel("taylorseer", {"cache_interval": 3}),
    "pab": Accel("pab"),
    "pab_shared": Accel("pab", {"per_branch": False}),
    "seacache": Accel("seacache"),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread in this module (restored after): on a shared 2-core machine two OpenMP threads
    can be 30x slower. Every comparison here is between runs made with the same thread count."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """MagCache calibrations in a fresh folder, none in memory."""
    from wanlab import accel

    monkeypatch.setenv("WANLAB_CACHE", str(tmp_path / "cache"))
    accel.clear_calibrations()
    yield tmp_path / "cache" / "magcache"
    accel.clear_calibrations()


@contextlib.contextmanager
def default_accel(pipe, value):
    saved = pipe.accel
    pipe.accel = Accel.coerce(value)
    try:
        yield
    finally:
        pipe.accel = saved


# --- validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field, rule_part", [
    (dict(cache="teacache"), "cache", "one of none, first_block"),
    (dict(cache=3), "cache", "one of none"),
    (dict(cache="first_block", cache_params={"threshold": 1.5}), "cache_params.threshold", "(0, 1]"),
    (dict(cache="first_block", cache_params={"threshold": 0}), "cache_params.threshold", "(0, 1]"),
    (dict(cache="first_block", cache_params={"threshold": "0.1"}), "cache_params.threshold", "a number"),
    (dict(cache="first_block", cache_params={"treshold": 0.1}), "cache_params.treshold", "threshold"),
    (dict(cache="none", cache_params={"threshold": 0.1}), "cache_params.threshold", "cache='none'"),
    (dict(cache="mag", cache_params={"max_skip_steps": 0}), "cache_params.max_skip_steps", "1..100"),
    (dict(cache="mag", cache_params={"retention_ratio": 1.0}), "cache_params.retention_ratio", "[0, 1)"),
    (dict(cache="mag", cache_params={"mag_ratios": [1.0, -2.0]}), "cache_params.mag_ratios", "positive"),
    (dict(cache="mag", cache_params={"mag_ratios": "calibrate"}), "cache_params.mag_ratios", "'auto'"),
    (dict(cache="taylorseer", cache_params={"modules": ["attn3"]}), "cache_params.modules", "attn1, attn2, ffn"),
    (dict(cache="taylorseer", cache_params={"max_order": True}), "cache_params.max_order", "integer"),
    (dict(cache="taylorseer", cache_params={"taylor_factors_dtype": "fp8"}), "cache_params.taylor_factors_dtype",
     "'float32'"),
    (dict(cache="pab", cache_params={"spatial_attention_block_skip_range": 1}),
     "cache_params.spatial_attention_block_skip_range", "2..100"),
    (dict(cache="pab", cache_params={"spatial_attention_block_skip_range": None}),
     "cache_params.spatial_attention_block_skip_range", "skips nothing"),
    (dict(cache="pab", cache_params={"spatial_attention_timestep_skip_range": [800, 100]}),
     "cache_params.spatial_attention_timestep_skip_range", "low < high"),
    (dict(cache="seacache", cache_params={"residual_order": 2}), "cache_params.residual_order", "one of 0, 1"),
    (dict(cache="first_block", cache_params=[("threshold", 0.1)]), "cache_params", "a mapping"),
    (dict(compile="yes"), "compile", "off, transformer, blocks"),
    (dict(compile=True), "compile", "off, transformer, blocks"),
    (dict(attention_backend="fastest"), "attention_backend", "diffusers attention backend"),
])
def test_bad_settings_name_field_rule_and_value(kwargs, field, rule_part):
    with pytest.raises(ParamError) as info:
        Accel(**kwargs)
    err = info.value
    assert err.field == field
    assert rule_part in err.rule
    assert str(err).startswith(f"{field}: must be ") and repr(err.value) in str(err)


def test_fastercache_is_refused_with_the_reason():
    with pytest.raises(ParamError) as info:
        Accel("faster")
    assert info.value.field == "cache"
    assert "two calls per step" in str(info.value) and "IndexError" in str(info.value)


def test_presets_coerce_and_bad_names():
    for name in PRESETS:
        assert Accel.preset(name).name == name
    assert Accel.coerce(None) == Accel() and Accel.coerce("fbc") == Accel.preset("fbc")
    assert Accel.coerce({"cache": "first_block"}) == Accel("first_block")
    with pytest.raises(ParamError, match=r"^preset: must be one of exact, fbc"):
        Accel.preset("turbo")
    with pytest.raises(ParamError, match=r"^accel: must be an Accel, a mapping or a preset name"):
        Accel.coerce("turbo")
    with pytest.raises(ParamError, match=r"^accel: must be"):
        Accel.coerce(0.2)
    with pytest.raises(ParamError, match=r"^speed: must be an acceleration field"):
        Accel.from_dict({"cache": "none", "speed": 2})


def test_load_and_generate_validate_before_running(pipe):
    import wanlab

    with pytest.raises(ParamError, match=r"^accel: must be"):
        wanlab.load("tiny", accel="turbo", progress=False)
    with pytest.raises(ParamError) as info:
        wanlab.load("tiny", group_offload="block_level", progress=False)
    assert info.value.field == "group_offload" and "CUDA" in info.value.rule
    with pytest.raises(ParamError, match=r"^group_offload: must be None, True or one of"):
        wanlab.load("tiny", group_offload="everything", progress=False)
    with pytest.raises(ParamError, match=r"^cache_params.threshold"):
        pipe.generate(**CASE, accel={"cache": "first_block", "cache_params": {"threshold": 7}})
    with pytest.raises(ParamError) as info:
        pipe.generate(**CASE, accel=Accel(attention_backend="flash"))
    assert info.value.field == "attention_backend" and "cpu" in info.value.rule
    assert not pipe.diffusers.transformer.is_cache_enabled


# --- identity -----------------------------------------------------------------------------------------
def test_canonical_dict_key_and_round_trips():
    assert Accel().to_dict() == {"cache": "none"}  # the record's placeholder before accel existed
    fbc = Accel("first_block", {"threshold": 0.2})
    assert fbc.to_dict() == {"cache": "first_block", "cache_params": {"threshold": 0.2}}
    mag = Accel("mag", compile="blocks", attention_backend="NATIVE")
    assert mag.to_dict()["cache_params"] == {k: (list(d) if isinstance(d, tuple) else d)
                                             for k, (d, _) in CACHE_PARAMS["mag"].items()}
    assert mag.to_dict()["compile"] == "blocks" and mag.attention_backend == "native"
    for accel in (Accel(), fbc, mag, *(Accel.preset(n) for n in PRESETS), *METHODS.values()):
        assert Accel.from_dict(accel.to_dict()) == accel
        assert Accel.from_dict(accel.to_dict()).key() == accel.key()
        assert pickle.loads(pickle.dumps(accel)) == accel
        assert re.fullmatch(r"[0-9a-f]{16}", accel.key())
    # explicit defaults, names and param order do not change the identity; values do
    assert Accel("first_block", {"threshold": 0.05}) == Accel("first_block")
    assert Accel("first_block", name="a").key() == Accel("first_block", name="b").key()
    assert fbc.key() != Accel("first_block", {"threshold": 0.1}).key() != Accel().key()
    assert len({Accel(), Accel(), fbc}) == 2
    assert fbc.replace(cache_params={"threshold": 0.3}).cache_params["threshold"] == 0.3
    assert fbc.label == "fbc-fast" and Accel().label == "exact"  # the preset it equals
    assert fbc.replace(cache_params={"threshold": 0.3}).label == "first_block(threshold=0.3)"
    with pytest.raises(TypeError):
        fbc.cache_params["threshold"] = 0.5  # read-only


def test_record_and_run_key_hold_the_setting(pipe):
    from wanlab.keys import record_key_parts

    exact = pipe.generate(**CASE)
    fast = pipe.generate(**CASE, accel="fbc-fast")
    assert exact.record["accel"] == {"cache": "none"}
    assert fast.record["accel"] == Accel.preset("fbc-fast").to_dict()
    recorded = {name: run_key(record_key_parts(v.to_record())) for name, v in (("exact", exact), ("fast", fast))}
    assert recorded["exact"] != recorded["fast"]
    assert recorded["exact"] == run_key(pipe.key_parts(exact.params))  # the key known before running is the stored one
    with default_accel(pipe, "fbc-fast"):
        assert pipe.key_parts(fast.params)["accel"] == fast.record["accel"]
        assert run_key(pipe.key_parts(fast.params)) == recorded["fast"]
        by_default = pipe.generate(**CASE)
        assert by_default.digest == fast.digest and by_default.record["accel"] == fast.record["accel"]
        assert pipe.generate(**CASE, accel="exact").digest == exact.digest  # per call beats the default
    stats = exact.record["accel_stats"]
    assert stats["calls"] == 2 * STEPS == stats["calls_full"] and stats["block_work"] == 1.0
    stats = fast.record["accel_stats"]
    assert stats["calls"] == 2 * STEPS and stats["calls_skipped"] > 0 and stats["block_work"] < 1.0
    no_cfg = pipe.generate(**{**CASE, "guidance_scale": 1.0})
    assert no_cfg.record["accel_stats"]["calls"] == STEPS  # one call per step without guidance


# --- exactness ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_skips_work_and_switching_off_is_bit_identical(pipe, cache_dir, name):
    before = pipe.generate(**CASE)
    accelerated = pipe.generate(**CASE, accel=METHODS[name])
    after = pipe.generate(**CASE)
    stats = accelerated.record["accel_stats"]
    assert stats["block_work"] < 1.0, f"{name} skipped nothing: {stats}"
    assert accelerated.digest != before.digest
    assert not np.array_equal(accelerated.latents, before.latents)
    assert after.digest == before.digest and np.array_equal(after.latents, before.latents)
    transformer = pipe.diffusers.transformer
    assert not transformer.is_cache_enabled
    # no trace left on the modules (torch.compile guards on them)
    assert not any("forward" in m.__dict__ for m in transformer.modules())
    assert not any(internals.hook_registry(m) is not None for m in transformer.modules() if m is not transformer)
    # and an accelerated call repeats bit for bit
    assert pipe.generate(**CASE, accel=METHODS[name]).digest == accelerated.digest


def test_attention_backend_is_restored(pipe):
    active = internals.active_attention_backend()
    before = pipe.generate(**CASE)
    math_ = pipe.generate(**CASE, accel=Accel(attention_backend="_native_math"))
    assert math_.record["accel"] == {"cache": "none", "attention_backend": "_native_math"}
    assert internals.active_attention_backend() == active  # diffusers' reset leaves it changed
    assert pipe.generate(**CASE).digest == before.digest


def test_hooks_are_removed_when_the_call_fails(pipe):
    before = pipe.generate(**CASE)

    def boom(done, total):
        if done == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        pipe.generate(**CASE, accel="taylorseer", on_step=boom)
    assert not pipe.diffusers.transformer.is_cache_enabled
    assert pipe.generate(**CASE).digest == before.digest


def test_taylorseer_targets_wans_blocks_where_diffusers_defaults_match_nothing(pipe):
    from diffusers.hooks import TaylorSeerCacheConfig

    from wanlab.accel.apply import applied

    transformer = pipe.diffusers.transformer
    transformer.enable_cache(TaylorSeerCacheConfig())
    try:
        assert internals.hooked_modules(transformer) == []  # diffusers' default: silently nothing
    finally:
        transformer.disable_cache()
    p = pipe.params(**CASE)
    with applied(pipe, "taylorseer", p) as acc:
        layers = len(transformer.blocks)
        assert sorted(acc.hooked) == sorted(f"blocks.{i}.{m}" for i in range(layers)
                                            for m in ("attn1", "attn2", "ffn"))
    with applied(pipe, Accel("taylorseer", {"modules": ["ffn"]}), p) as acc:
        assert acc.hooked == [f"blocks.{i}.ffn" for i in range(layers)]
    assert internals.hooked_modules(transformer) == []


def test_a_hook_enabled_outside_wanlab_is_reported(pipe):
    from diffusers.hooks import FirstBlockCacheConfig

    transformer = pipe.diffusers.transformer
    transformer.enable_cache(FirstBlockCacheConfig(0.1))
    try:
        with pytest.raises(RuntimeError, match="already enabled on the transformer, outside wanlab"):
            pipe.generate(**CASE, accel="fbc")
    finally:
        transformer.disable_cache()


# --- MagCache calibration -----------------------------------------------------------------------------
def test_calibration_matches_diffusers_calibrate_mode(pipe, cache_dir):
    """wanlab's ratios are what diffusers' MagCacheConfig(calibrate=True) prints, branch by branch."""
    import torch
    from diffusers.hooks import MagCacheConfig

    from wanlab.accel import calibrate

    p = pipe.params(**CASE)
    ours = calibrate(pipe, p, "mag")
    assert ours["source"] == "calibrated" and len(ours["ratios"]) == STEPS
    assert ours["ratios"] == [(a + b) / 2 for a, b in zip(ours["cond"], ours["uncond"])]

    dpipe = pipe.diffusers
    accel = Accel("mag")
    saved = dpipe.scheduler
    dpipe.scheduler = type(saved).from_config(saved.config, flow_shift=p.flow_shift)
    dpipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=STEPS))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), torch.inference_mode():
            dpipe(prompt_embeds=pipe.encode(accel.cache_params["calibration_prompt"]),
                  negative_prompt_embeds=pipe.encode(""), height=p.height, width=p.width,
                  num_frames=p.num_frames, num_inference_steps=STEPS, guidance_scale=p.guidance_scale,
                  generator=torch.Generator("cpu").manual_seed(accel.cache_params["calibration_seed"]),
                  output_type="latent", max_sequence_length=pipe.max_sequence_length)
    finally:
        dpipe.transformer.disable_cache()
        dpipe.scheduler = saved
    printed = [eval(line) for line in out.getvalue().splitlines() if line.startswith("[1.0")]
    assert printed == [ours["cond"], ours["uncond"]]


def test_calibration_is_cached_keyed_and_recorded(pipe, cache_dir):
    from wanlab import accel as accel_mod

    first = pipe.generate(**CASE, accel="mag")
    cal = first.record["accel_calibration"]
    assert cal["source"] == "calibrated" and len(cal["ratios"]) == STEPS
    assert re.fullmatch(r"[0-9a-f]{64}", cal["sha256"])
    assert (cache_dir / f"{cal['key']}.json").is_file()
    assert first.record["accel"]["cache_params"]["mag_ratios"] == "auto"

    second = pipe.generate(**CASE, accel="mag")
    assert second.record["accel_calibration"]["source"] == "memory"
    accel_mod.clear_calibrations()  # a new process: read from disk
    third = pipe.generate(**CASE, accel="mag")
    assert third.record["accel_calibration"]["source"] == "disk"
    assert first.digest == second.digest == third.digest
    assert {r.record["accel_calibration"]["sha256"] for r in (first, second, third)} == {cal["sha256"]}

    # the key follows what the ratios depend on: other steps or seed-independent? steps yes, seed no
    p = pipe.params(**CASE)
    key = accel_mod.calibration_key(pipe, p, Accel("mag"))
    assert key == cal["key"]
    assert accel_mod.calibration_key(pipe, p.replace(seed=99), Accel("mag")) == key
    for change in ({"steps": STEPS + 1}, {"guidance_scale": 3.0}, {"flow_shift": 3.0}, {"width": 48}):
        assert accel_mod.calibration_key(pipe, p.replace(**change), Accel("mag")) != key, change
    assert accel_mod.calibration_key(pipe, p, Accel("mag", {"calibration_seed": 1})) != key
    # thresholds do not need a new calibration
    assert accel_mod.calibration_key(pipe, p, Accel.preset("mag-fast")) == key

    # explicit ratios: no calibration, and they are part of the setting (and key)
    given = Accel("mag", {"mag_ratios": cal["ratios"]})
    video = pipe.generate(**CASE, accel=given)
    assert "accel_calibration" not in video.record
    assert video.record["accel"]["cache_params"]["mag_ratios"] == cal["ratios"]
    assert video.digest == first.digest


def test_a_corrupt_calibration_file_is_recalibrated(pipe, cache_dir):
    from wanlab import accel as accel_mod

    p = pipe.params(**CASE)
    cal = accel_mod.calibrate(pipe, p)
    accel_mod.clear_calibrations()
    (cache_dir / f"{cal['key']}.json").write_text("{not json")
    again = accel_mod.calibrate(pipe, p)
    assert again["source"] == "calibrated" and again["ratios"] == cal["ratios"]


# --- study --------------------------------------------------------------------------------------------
def test_study_table_summary_and_plot(pipe, cache_dir):
    from wanlab.accel import plot_study, study, summarize

    points = [{**CASE, "seed": -1}, {**CASE, "seed": 5}]
    df = study(pipe, points, ["fbc-fast", "mag", {"cache": "pab"}])
    assert list(df["setting"]) == ["exact", "fbc-fast", "mag", "pab"] * 2
    assert df.groupby("point")["seed"].nunique().eq(1).all() and (df["seed"] != -1).all()
    exact = df[df.setting == "exact"]
    assert exact["identical"].all() and np.isinf(exact["psnr"]).all() and (exact["speedup"] == 1.0).all()
    assert (exact["rel_l2"] == 0).all() and (exact["calls_skipped"] == 0).all()
    fast = df[df.setting != "exact"]
    assert not fast["identical"].any() and np.isfinite(fast["psnr"]).all()
    assert (fast["rel_l2"] > 0).all() and (fast["block_work"] < 1).all() and fast["repeatable"].all()
    assert (df["calls"] == 2 * STEPS).all()
    for col in ("denoise_s", "speedup", "psnr", "ssim", "rel_l2", "calls_skipped", "accel_key"):
        assert col in df
    assert df.attrs["settings"]["fbc-fast"] == Accel.preset("fbc-fast").to_dict()

    summary = summarize(df)
    assert list(summary["setting"]) == ["exact", "fbc-fast", "mag", "pab"]
    assert bool(summary.set_index("setting").loc["exact", "pareto"])  # nothing is more faithful
    fig = plot_study(df)
    ax = fig.axes[0]
    assert "speedup" in ax.get_xlabel() and "PSNR" in ax.get_ylabel()
    assert {t.get_text() for t in ax.texts} == {"exact", "fbc-fast", "mag", "pab"}


def test_study_validates_its_inputs(pipe):
    from wanlab.accel import study

    with pytest.raises(ParamError, match=r"^settings\[0\]: must be"):
        study(pipe, CASE, ["turbo"])
    with pytest.raises(ParamError, match=r"^points: must be"):
        study(pipe, [], ["fbc"])
    with pytest.raises(ParamError, match=r"^repeats: must be"):
        study(pipe, CASE, ["fbc"], repeats=0)
    with pytest.raises(ParamError, match=r"^timing: must be 'median' or 'min'"):
        study(pipe, CASE, ["fbc"], timing="mean")
    with pytest.raises(ParamError, match=r"^settings: must be settings with distinct labels"):
        study(pipe, CASE, {"exact": "fbc"})


def test_pareto_mask():
    from wanlab.accel import pareto_mask

    # (speed, psnr): b dominates d; a is the most faithful, c the fastest
    assert pareto_mask([1.0, 1.5, 2.0, 1.4], [float("inf"), 40.0, 30.0, 35.0]) == [True, True, True, False]
    assert pareto_mask([1.0, 1.0], [30.0, 30.0]) == [True, True]  # ties dominate nothing


def test_pooled_psnr():
    from wanlab.accel import pooled_psnr

    assert pooled_psnr([30.0, 30.0]) == pytest.approx(30.0)
    assert pooled_psnr([float("inf"), float("inf")]) == float("inf")
    # one identical frame does not make the whole video "identical": the MSE is halved, +3 dB
    assert pooled_psnr([float("inf"), 30.0]) == pytest.approx(30.0 + 10 * np.log10(2))
    assert pooled_psnr([20.0, 40.0]) == pytest.approx(10 * np.log10(255.0**2 / ((255.0**2 / 100 + 255.0**2 / 1e4) / 2)))


def test_study_takes_a_sweeps_points(pipe):
    from wanlab import Sweep
    from wanlab.accel import study

    sweep = Sweep(base={k: v for k, v in CASE.items() if k != "seed"}, seeds=[1, 2])
    df = study(pipe, sweep, {"fast": "fbc-fast"}, warmup=False)
    assert list(df["setting"]) == ["exact", "fast"] * 2 and list(df["seed"]) == [1, 1, 2, 2]


def test_the_default_setting_travels_with_the_pipeline(pipe):
    from wanlab.pipeline import Pipeline

    other = Pipeline(pipe.diffusers, pipe.identity, device=pipe.device, accel="fbc")
    p = pipe.params(**CASE)
    assert other.accel == Accel.preset("fbc") and other.key_parts(p)["accel"] == Accel.preset("fbc").to_dict()
    assert pipe.accel == Accel() and pipe.key_parts(p)["accel"] == {"cache": "none"}
    assert "group_offload" not in pipe.generation_settings()  # keys of runs without it are unchanged


def test_calibration_key_follows_the_loras(pipe, lora_files):
    from wanlab import LoRA
    from wanlab.accel import calibration_key

    p = pipe.params(**CASE)
    mag = Accel("mag")
    with_lora = p.replace(loras=[LoRA(str(lora_files["diffusers"]), 1.0)])
    keys = {calibration_key(pipe, q, mag) for q in (p, with_lora, with_lora.replace(loras=[
        LoRA(str(lora_files["diffusers"]), 0.5)]))}
    assert len(keys) == 3


# --- the accel sweep axis -----------------------------------------------------------------------------
AXIS_BASE = {k: v for k, v in CASE.items() if k != "seed"}


def accel_sweep(**kw):
    from wanlab import Sweep

    if not {"grid", "zip", "points"} & set(kw):
        kw["grid"] = {"accel": ["exact", "fbc-fast", {"cache": "pab"}]}
    return Sweep(base=kw.pop("base", dict(AXIS_BASE)), seeds=kw.pop("seeds", [1, 2]), name="accel-axis", **kw)


@pytest.mark.parametrize("kwargs, message", [
    ({"grid": {"accel": ["exact", "turbo"]}}, r"^grid\.accel\[1\]: must be an Accel, a mapping or a preset name "
                                              r"\(exact, fbc, .*\); got 'turbo'$"),
    ({"grid": {"accel": [{"cache": "first_block", "cache_params": {"treshold": 0.2}}]}},
     r"^grid\.accel\[0\]\.cache_params\.treshold: must be a parameter of cache='first_block' \(threshold\)"),
    ({"zip": {"accel": ["fbc", {"cache": "faster"}], "steps": [8, 9]}},
     r"^zip\.accel\[1\]\.cache: must be a method that works with Wan"),
    ({"points": [{"accel": 3}]}, r"^points\[0\]\.accel: must be an Accel"),
    ({"grid": {"accel": ["fbc", {"cache": "first_block", "cache_params": {"threshold": 0.1}}]}},
     r"^point 1: must be a request different from every other point"),
    ({"grid": {"accel": [{"cache": "pab", "name": "x"}, {"cache": "mag", "name": "x"}]}},
     r"^accel: must be settings with distinct labels"),
    ({"grid": {"accel": ["exact", "fbc"]}, "reference": {"accel": "mag"}},
     r"^reference\.accel: must be a value some point of the sweep has"),
])
def test_the_accel_axis_validates_every_setting_up_front(kwargs, message):
    with pytest.raises(ParamError, match=message):
        accel_sweep(**kwargs)


def test_the_accel_axis_round_trips_through_toml(tmp_path):
    from wanlab import Sweep

    sweep = accel_sweep(grid={"accel": ["exact", Accel.preset("fbc"), Accel("first_block", {"threshold": 0.3}),
                                        Accel("pab", name="pab-mine")]},
                        reference={"accel": "exact"})
    assert sweep.swept == ["seed", "accel"] and len(sweep) == 8
    assert sweep.grid["accel"] == ("exact", "fbc", {"cache": "first_block", "cache_params": {"threshold": 0.3}},
                                   {"cache": "pab", "name": "pab-mine"})
    assert [a.label for a in sweep.accels()[:4]] == ["exact", "fbc", "first_block(threshold=0.3)", "pab-mine"]
    assert sweep.label(2) == "seed=1, accel=first_block(threshold=0.3)"
    assert sweep.slug(1) == "seed1_accelfbc"
    file = sweep.save(tmp_path / "acc.toml")
    assert '{ cache = "first_block", cache_params = { threshold = 0.3 } },' in file.read_text()
    again = Sweep.load(file)
    assert again == sweep and again.accels() == sweep.accels()
    # a setting in the base applies to every point; a sweep without accel leaves the pipeline's default
    based = accel_sweep(grid={"steps": [8, 9]}, base={**AXIS_BASE, "accel": "mag"})
    assert based.accels() == [Accel.preset("mag")] * 4 and "accel" not in based.swept
    assert accel_sweep(grid={"steps": [8, 9]}).accels() == [None] * 4


def test_an_accel_sweep_runs_every_setting_on_the_same_requests(pipe, tmp_path, cache_dir):
    from wanlab import Store
    from wanlab.accel import plot_study, rel_l2, summarize

    store = Store(tmp_path / "runs")
    sweep = accel_sweep()
    result = sweep.run(pipe, store, progress=False, metrics=False)
    df = result.df
    assert list(df["accel"]) == ["exact", "fbc-fast", "pab"] * 2 and result.complete
    assert {"denoise_s", "calls_skipped"} <= set(df.columns) and (df["denoise_s"] > 0).all()
    assert (df[df.accel == "fbc-fast"]["calls_skipped"] > 0).all()
    assert (df[df.accel != "fbc-fast"]["calls_skipped"] == 0).all()
    # keys, records and latents: the same as generating each point with its setting by hand
    for i, (params, accel) in enumerate(zip(result.points, result.accels)):
        run = store.get(df["key"][i])
        assert run.key == run_key(pipe.key_parts(params, accel))
        assert run.record["accel"] == accel.to_dict() and run.has_latents
    by_hand = pipe.generate(result.points[1], accel="fbc-fast", progress=False)
    exact = pipe.generate(result.points[0], progress=False)
    assert store.get(df["key"][1]).digest == by_hand.digest
    assert np.array_equal(store.get(df["key"][1]).latents(), by_hand.latents)
    table = store.df
    assert dict(zip(table["key"], table["accel"])) == dict(zip(df["key"], df["accel"]))  # labels in the store's table
    # the exact point of an accel sweep is the very run a plain sweep stores
    assert df["key"][0] == run_key(pipe.key_parts(result.points[0])) and df["digest"][0] == exact.digest

    study = result.accel_study()
    assert list(study["setting"]) == ["exact", "fbc-fast", "pab"] * 2 and list(study["seed"]) == [1] * 3 + [2] * 3
    ex = study[study.setting == "exact"]
    assert ex["identical"].all() and (ex["speedup"] == 1.0).all() and np.isinf(ex["psnr"]).all()
    assert (ex["rel_l2"] == 0).all()
    fast = study[study.setting != "exact"]
    assert not fast["identical"].any() and np.isfinite(fast["psnr"]).all() and (fast["rel_l2"] > 0).all()
    assert study["rel_l2"][1] == pytest.approx(rel_l2(by_hand.latents, exact.latents))
    assert (study["calls"] == 2 * STEPS).all() and study.attrs["reference"] == "exact"
    summary = summarize(study)
    assert list(summary["setting"]) == ["exact", "fbc-fast", "pab"]
    assert "flow_magnitude_change" not in study.columns  # nothing measured yet
    # measured later (no regenerating): the study and its summary say what each setting changes
    from wanlab.sweep.measure import measure_store

    assert measure_store(store, "motion", progress=False)["measured"] == 6
    measured = sweep.result(pipe, store).accel_study()
    change = measured["flow_magnitude"] - measured.groupby("seed")["flow_magnitude"].transform("first")
    assert np.allclose(measured["flow_magnitude_change"], change) and (measured.query("setting == 'exact'")[
        "flow_magnitude_change"] == 0).all()
    assert summarize(measured).set_index("setting")["flow_magnitude_change"].to_dict() == pytest.approx(
        measured.groupby("setting")["flow_magnitude_change"].mean().to_dict())
    assert {t.get_text() for t in plot_study(study).axes[0].texts} == {"exact", "fbc-fast", "pab"}
    # against another reference; select and compare take settings too
    assert (result.accel_study("pab").query("setting == 'pab'")["identical"]).all()
    named = accel_sweep(reference={"accel": {"cache": "pab"}}).result(pipe, store)  # the same runs
    assert named.accel_study().attrs["reference"] == "pab" and named.ran == []
    assert list(result.select(accel=Accel.preset("fbc-fast"))["seed"]) == [1, 2]
    assert np.isinf(result.compare(accel="exact").set_index("accel").loc["exact", "psnr_vs_ref"]).all()

    # resumable: a re-run generates nothing
    assert sweep.run(pipe, store, progress=False, metrics=False).ran == []

    # the report has the acceleration section: the study as CSV, the speed-vs-PSNR plot, the summary
    from wanlab.report import write_sweep_report

    page = write_sweep_report(result, tmp_path / "report", metric="calls_skipped").read_text()
    assert "Acceleration: speed vs fidelity" in page and page.count("fbc-fast") >= 3
    assert (tmp_path / "report" / "accel_speed_vs_psnr.png").stat().st_size > 1000
    import pandas as pd

    written = pd.read_csv(tmp_path / "report" / "accel_study.csv")
    assert list(written["setting"]) == list(study["setting"])
    assert sorted(p.name for p in (tmp_path / "report" / "videos").glob("*.mp4"))[0] == "seed1_accelexact.mp4"


def test_an_accel_sweep_adds_latents_to_exact_runs_stored_without_them(pipe, tmp_path):
    from wanlab import Store, Sweep

    store = Store(tmp_path / "runs")
    plain = Sweep(base=dict(AXIS_BASE), seeds=[1]).run(pipe, store, progress=False, metrics=False)
    key = plain.df["key"][0]
    assert not store.get(key).has_latents
    result = accel_sweep(seeds=[1], grid={"accel": ["exact", "pab"]}).run(pipe, store, progress=False, metrics=False)
    assert result.df["key"][0] == key and result.ran == [0, 1]
    run = store.get(key)
    assert run.has_latents and run.digest == plain.df["digest"][0] and len(store) == 2
    assert result.accel_study()["rel_l2"][0] == 0


def test_accel_study_needs_an_accel_sweep_with_its_reference_done(pipe, tmp_path):
    from wanlab import Sweep

    plain = Sweep(base=dict(AXIS_BASE), seeds=[1]).result(pipe, tmp_path / "runs")
    with pytest.raises(ValueError, match="does not vary accel"):
        plain.accel_study()
    pending = accel_sweep().result(pipe, tmp_path / "runs")
    with pytest.raises(ValueError, match=r"no done run has the reference setting 'exact' \(the sweep's settings: "
                                         r"exact, fbc-fast, pab\)"):
        pending.accel_study()


def test_study_takes_a_sweep_with_an_accel_axis_once_per_request(pipe):
    from wanlab.accel import study

    df = study(pipe, accel_sweep(seeds=[1]), ["fbc-fast"], warmup=False)
    assert list(df["setting"]) == ["exact", "fbc-fast"]


def test_cli_sweep_over_accel_prints_the_per_setting_summary(tmp_path, capsys):
    from wanlab.cli import main

    file = tmp_path / "acc.toml"
    file.write_text('# Question: what does PAB cost?\nname = "acc"\nmodel = "tiny"\nseeds = [1]\n'
                    '[base]\nprompt = "a fox"\nwidth = 32\nheight = 32\nnum_frames = 5\nsteps = 8\n'
                    '[grid]\naccel = ["exact", "pab"]\n')
    assert main(["sweep", str(file), "--store", str(tmp_path / "runs"), "--quiet", "--no-metrics"]) == 0
    out = capsys.readouterr().out
    assert "acceleration, against exact" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip().startswith(("exact", "pab"))}
    assert lines["exact"][2:4] == ["1", "inf"] and float(lines["pab"][3]) > 20
