"""Probes never change the frames: the digest with and without each probe, and all together, is the
same with CFG on and off, with LoRAs and with every acceleration setting; and under acceleration the
features probe marks the skipped calls the setting itself counts."""
from __future__ import annotations

import pytest

from wanlab.errors import ProbeError

PROMPT = "a red square moving right quickly"
ALL = ["trajectory", "attention", "features"]
BASE = dict(width=32, height=32, num_frames=5, prompt=PROMPT, seed=11, progress=False)


def _check(pipe, probes_sets, **kw):
    plain = pipe.generate(**BASE, **kw)
    for probes in probes_sets:
        video = pipe.generate(**BASE, **kw, probes=probes)
        assert video.digest == plain.digest, probes
        assert list(video.probes) == (probes if isinstance(probes, list) else list(probes))
    return plain


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["cfg-off", "cfg-on"])
def test_each_probe_and_all_together_leave_the_frames_alone(pipe, guidance):
    _check(pipe, [["trajectory"], ["attention"], ["features"], ALL], steps=2, guidance_scale=guidance)


def test_probes_leave_the_frames_alone_with_loras(pipe, lora_files):
    import wanlab

    loras = [wanlab.LoRA(str(lora_files["diffusers"]), 0.7), wanlab.LoRA(str(lora_files["other"]), 0.4)]
    _check(pipe, [ALL], steps=3, guidance_scale=3.0, loras=loras)


@pytest.mark.parametrize("preset", ["fbc-fast", "mag", "taylorseer", "pab", "seacache"])
def test_probes_leave_the_frames_alone_under_acceleration_and_mark_what_it_skipped(pipe, preset):
    plain = pipe.generate(**BASE, steps=6, guidance_scale=3.0, accel=preset)
    video = pipe.generate(**BASE, steps=6, guidance_scale=3.0, accel=preset, probes=ALL)
    assert video.digest == plain.digest
    features = video.probes["features"]
    stats = video.record["accel_stats"]
    assert features.skipped_calls == stats["calls_skipped"]
    assert int(features.units.sum()) == round(stats["block_work"] * stats["calls"] * 2 * 3)
    if preset in ("fbc-fast", "mag"):
        assert stats["calls_skipped"] > 0  # the comparison above is not vacuous


def test_probes_that_hook_blocks_are_refused_with_compile_before_compiling(pipe):
    with pytest.raises(ProbeError, match=r"probes: must be only trajectory with compile"):
        pipe.generate(**BASE, steps=2, accel="compile", probes=["features"])


def test_attention_averages_over_the_block_calls_that_ran_under_a_cache(pipe):
    """First-block cache skips block 1 at some steps: there, the all-blocks map equals block 0's own."""
    import numpy as np

    kw = dict(BASE, steps=6, guidance_scale=3.0, accel="fbc-fast")
    both = pipe.generate(**kw, probes=["attention", "features"])
    first = pipe.generate(**kw, probes={"attention": {"blocks": [0]}}).probes["attention"]
    skipped = both.probes["features"].units[:, 0, 1] == 0  # block 1, conditional branch
    assert skipped.any() and not skipped.all()
    attention = both.probes["attention"]
    assert np.allclose(attention.per_step[skipped], first.per_step[skipped], atol=1e-7)
    assert not np.allclose(attention.per_step[~skipped], first.per_step[~skipped], atol=1e-7)
