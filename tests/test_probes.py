"""Probes (wanlab.probes): validation, the three probes' known answers, saving and loading with a run."""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

import wanlab
from wanlab.errors import ProbeError
from wanlab.probes import Probes, normalize
from wanlab.probes.words import merge_pieces

PROMPT = "a red square moving right quickly"


@pytest.fixture(scope="module")
def runs(pipe, small):
    """One tiny run without probes and the same run with all three (CFG on, 4 steps)."""
    kw = dict(small, prompt=PROMPT, seed=5, steps=4, guidance_scale=3.0)
    plain = pipe.generate(**kw, progress=False)
    probed = pipe.generate(**kw, progress=False, probes=["trajectory", "attention", "features"])
    return plain, probed, kw


@pytest.fixture(scope="module")
def small():  # module-scoped copy of conftest's
    from tests.conftest import SMALL

    return dict(SMALL)


# --- validation ---------------------------------------------------------------------------------------
def test_normalize_fills_defaults_and_orders_names():
    out = normalize(["features", "trajectory"])
    assert list(out) == ["trajectory", "features"]
    assert out["features"] == {"blocks": None}
    assert normalize({"attention": {"words": "Square", "steps": 2}})["attention"]["words"] == ["Square"]
    assert normalize({"attention": {"steps": [3, 1]}})["attention"]["steps"] == [1, 3]
    assert normalize(None) is None and normalize([]) is None


@pytest.mark.parametrize("probes, field, value", [
    (["trajectroy"], "probes", "'trajectroy'"),
    ({"attention": {"word": ["x"]}}, "probes.attention.word", "['x']"),
    ({"attention": {"steps": [-1]}}, "probes.attention.steps", "[-1]"),
    ({"attention": {"words": ["two words"]}}, "probes.attention.words", "['two words']"),
    ({"attention": {"chunk": 3}}, "probes.attention.chunk", "3"),
    ({"trajectory": {"dtype": "int8"}}, "probes.trajectory.dtype", "'int8'"),
    ({"features": 5}, "probes.features", "5"),
    (42, "probes", "42"),
])
def test_bad_probes_name_the_field_the_rule_and_the_value(probes, field, value):
    with pytest.raises(ProbeError) as info:
        normalize(probes)
    message = str(info.value)
    assert message.startswith(f"{field}: must be ") and message.endswith(f"got {value}")


def test_steps_and_blocks_are_checked_against_the_request_and_model_before_generating(pipe, small):
    with pytest.raises(ProbeError, match=r"probes.features.blocks: must be indices from 0 to 1"):
        pipe.generate(**small, prompt=PROMPT, seed=1, progress=False, probes={"features": {"blocks": [2]}})
    with pytest.raises(ProbeError, match=r"probes.attention.steps: must be indices from 0 to 1"):
        pipe.generate(**small, prompt=PROMPT, seed=1, progress=False, probes={"attention": {"steps": [5]}})


def test_words_merge_tokenizer_pieces():
    pieces = ["▁a", "▁re", "d", "▁s", "qua", "re", ",", "▁a", "▁", "b", "</s>", "<pad>"]
    assert merge_pieces(pieces, {"</s>", "<pad>"}) == {"a": [0, 7], "red": [1, 2], "square": [3, 4, 5], "b": [8, 9]}


def test_a_word_the_prompt_lacks_is_one_sentence_naming_the_prompts_words(pipe, small, runs):
    with pytest.raises(ProbeError) as info:
        pipe.generate(**small, prompt=PROMPT, seed=1, progress=False, probes={"attention": {"words": ["fox"]}})
    assert "fox" in str(info.value) and "a, red, square, moving, right, quickly" in str(info.value)
    attention = runs[1].probes["attention"]
    with pytest.raises(ProbeError) as info:
        attention.map("circle")
    assert str(info.value) == "the prompt has no word 'circle'; its words are: a, red, square, moving, right, quickly"


# --- the run ------------------------------------------------------------------------------------------
def test_probes_do_not_change_the_frames_and_are_none_without(runs):
    plain, probed, _ = runs
    assert plain.probes is None
    assert probed.digest == plain.digest
    assert np.array_equal(probed.latents, plain.latents)
    assert list(probed.probes) == ["trajectory", "attention", "features"]
    assert probed.record["probes"]["attention"]["chunk"] == 1024


def test_trajectory_last_prediction_is_the_final_latents_and_its_vae_preview_the_frames(pipe, runs):
    _, video, kw = runs
    traj = video.probes["trajectory"]
    assert traj.steps == kw["steps"]
    assert np.array_equal(traj.latents(-1), video.latents)
    assert np.array_equal(traj.preview(-1, decoder=pipe), video.frames)
    assert traj.distance[-1] == 0 and traj.distance.shape == (kw["steps"],) and traj.distance[0] > 0
    preview = traj.preview(0)
    assert preview.dtype == np.uint8 and preview.shape == video.frames.shape
    assert traj.decided_step(1e9) == kw["steps"] - 1 and traj.decided_step(1e-9) == 0
    with pytest.raises(ProbeError, match=r"step: must be an index from -4 to 3"):
        traj.preview(4)


def test_trajectory_prediction_is_what_the_scheduler_predicts(pipe, small):
    """x0 = sample - sigma * guided velocity is the clean-sample prediction UniPC itself keeps."""
    seen = []
    original = type(pipe.diffusers.scheduler).step

    def spy(self, model_output, timestep, sample, *a, **k):
        out = original(self, model_output, timestep, sample, *a, **k)
        seen.append(self.model_outputs[-1].clone())
        return out

    type(pipe.diffusers.scheduler).step = spy
    try:
        video = pipe.generate(**dict(small, steps=3), prompt=PROMPT, seed=2, progress=False, probes=["trajectory"])
    finally:
        type(pipe.diffusers.scheduler).step = original
    ours = video.probes["trajectory"].x0
    assert len(seen) == 3
    for mine, theirs in zip(ours, seen):
        assert np.array_equal(mine, theirs[0].numpy())


def test_trajectory_projection_for_real_wan_is_comfyuis_wan21():
    from wanlab.probes.projection import WAN21_BIAS, WAN21_FACTORS

    assert np.asarray(WAN21_FACTORS).shape == (16, 3) and len(WAN21_BIAS) == 3
    assert WAN21_FACTORS[0] == [-0.1299, -0.1692, 0.2932] and WAN21_BIAS == [-0.1835, -0.0868, -0.3360]


def test_projection_fit_recovers_a_linear_map():
    from wanlab.probes.projection import fit
    from wanlab.probes.results import upsample

    rng = np.random.default_rng(0)
    true_f = rng.normal(0, 0.1, (4, 3))  # small enough that no value is clipped
    true_b = np.array([0.1, -0.2, 0.05])
    lats, frames = [], []
    for _ in range(3):
        lat = rng.normal(0, 1, (1, 4, 3, 4, 4))
        rgb = np.einsum("cthw,ck->thwk", lat[0], true_f) + true_b
        small = np.clip(np.round((rgb + 1) * 127.5), 0, 255).astype(np.uint8)
        lats.append(lat)
        frames.append(upsample(small, 5, 32, 32, 2))
    factors, bias = fit(lats, frames, 2)
    assert np.allclose(factors, true_f, atol=2e-3) and np.allclose(bias, true_b, atol=2e-3)


def test_features_equal_an_independent_plain_forward_hook_computation(pipe, small):
    kw = dict(small, prompt=PROMPT, seed=3, steps=4, guidance_scale=3.0)
    outputs: dict[int, list] = {0: [], 1: []}
    calls = []
    handles = [pipe.diffusers.transformer.register_forward_pre_hook(lambda m, a: calls.append(1))]
    for i, block in enumerate(pipe.diffusers.transformer.blocks):
        handles.append(block.register_forward_hook(
            lambda m, a, out, i=i: outputs[i].append((len(calls), out.detach().clone()))))
    modulated = []
    handles.append(pipe.diffusers.transformer.blocks[0].attn1.register_forward_pre_hook(
        lambda m, a: modulated.append((len(calls), a[0].detach().clone()))))
    try:
        video = pipe.generate(**kw, progress=False, probes=["features"])
    finally:
        for h in handles:
            h.remove()
    features = video.probes["features"]
    assert features.change.shape == (3, 2)
    for block in (0, 1):
        cond = [out for call, out in outputs[block] if call % 2 == 1]  # calls 1, 3, 5, 7: the conditional branch
        expected = [float((b - a).abs().mean() / a.abs().mean()) for a, b in pairwise(cond)]
        assert np.allclose(features.change[:, block], expected, rtol=1e-6, atol=0)
    cond = [x for call, x in modulated if call % 2 == 1]
    expected = [float((b - a).abs().mean() / a.abs().mean()) for a, b in pairwise(cond)]
    assert np.allclose(features.input_change, expected, rtol=1e-6, atol=0)
    assert not features.skipped.any() and features.skipped_calls == 0


def test_attention_maps_are_chunk_invariant_in_range_and_match_a_full_computation(pipe, small):
    import torch

    from wanlab.models import internals

    kw = dict(small, prompt=PROMPT, seed=4, steps=2)
    big = pipe.generate(**kw, progress=False, probes={"attention": {"chunk": 4096}}).probes["attention"]
    tiny = pipe.generate(**kw, progress=False, probes={"attention": {"chunk": 16}}).probes["attention"]
    assert np.allclose(big.per_step, tiny.per_step, atol=1e-6)
    m = big.map("square")
    assert m.shape == (5, 32, 32) and m.dtype == np.float32 and m.min() >= 0 and m.max() == 1.0

    # independent: full softmax over every video token at once, per block, from the cross-attention's inputs
    from wanlab.probes.words import prompt_words

    tokens = prompt_words(pipe.diffusers.tokenizer, PROMPT, pipe.max_sequence_length)["square"]
    assert len(tokens) == 3  # "▁s" "qua" "re" in the tiny model's vocabulary
    sums = []

    def hook(module, args, kwargs):
        q, k = internals.cross_attention_qk(module, args[0], args[1])
        p = torch.softmax(torch.einsum("nhd,lhd->hnl", q[0].float(), k[0].float()) / q.shape[-1] ** 0.5, -1)
        sums.append(p.mean(0)[:, tokens].sum(-1))

    handles = [internals.cross_attention(b).register_forward_pre_hook(hook, with_kwargs=True)
               for b in internals.transformer_blocks(pipe.diffusers.transformer)]
    try:
        pipe.generate(**kw, progress=False)  # guidance 5 > 1: calls alternate cond, uncond
    finally:
        for h in handles:
            h.remove()
    blocks = 2
    cond = [sums[i] for i in range(len(sums)) if (i // blocks) % 2 == 0]  # per step: cond call's blocks first
    expected = torch.stack(cond).mean(0).numpy()
    assert np.allclose(big.tokens("square"), expected, atol=1e-6)


def test_attention_step_and_block_choices(pipe, small):
    kw = dict(small, prompt=PROMPT, seed=4, steps=2)
    att = pipe.generate(**kw, progress=False, probes={"attention": {"words": ["Square", "red"], "steps": [1],
                                                                    "blocks": [0]}}).probes["attention"]
    assert att.words == ["square", "red"] and att.per_step.shape[0] == 1 and att.per_block.shape[0] == 1
    assert att.map("square", step=1, block=0).shape == (5, 32, 32)
    with pytest.raises(ProbeError, match="step: must be one of the recorded steps"):
        att.map("square", step=0)
    with pytest.raises(ProbeError, match="was not recorded"):
        att.map("moving")


# --- saving -------------------------------------------------------------------------------------------
def _same(a: Probes, b: Probes) -> None:
    assert list(a) == list(b)
    for name in a:
        for key, value in a[name].arrays().items():
            other = b[name].arrays()[key]
            if key == "meta":
                assert value == other
            else:
                assert np.array_equal(value, other, equal_nan=value.dtype.kind == "f")


def test_video_save_and_load_keep_the_probes(runs, tmp_path):
    _, video, _ = runs
    path = video.save(tmp_path / "v.mp4")
    assert (tmp_path / "v.probes.npz").is_file()
    back = wanlab.Video.load(path)
    _same(video.probes, back.probes)
    assert back.record["probes"] == video.record["probes"]
    assert wanlab.Video.load(runs[0].save(tmp_path / "plain.mp4")).probes is None


def test_store_keeps_probes_and_adds_them_to_a_run_without(runs, tmp_path):
    plain, probed, _ = runs
    store = wanlab.Store(tmp_path / "store")
    run = store.put(plain)
    assert not run.has_probes and run.probes() is None and run.video().probes is None
    again = store.put(probed)  # the same run key: the probes are added, the frames kept
    assert again.key == run.key and again.has_probes
    assert again.record["probes"] == probed.record["probes"] and again.record["files"]["probes"] == "probes.npz"
    assert store.get(run.key).record["digest"] == plain.digest
    _same(probed.probes, again.probes())
    _same(probed.probes, wanlab.Video.load(again.path).probes)
    _same(probed.probes, store.get(run.key).video().probes)


def test_store_refuses_probes_over_its_bound(runs, tmp_path):
    store = wanlab.Store(tmp_path / "store")
    store.max_probe_mb = 1e-4
    with pytest.raises(wanlab.WanlabError, match="max_probe_mb"):
        store.put(runs[1])


def test_trajectory_size_bound_is_checked_at_the_first_step(pipe, small):
    with pytest.raises(ProbeError, match=r"probes.trajectory: 2 steps of latents .* over max_mb=1e-06"):
        pipe.generate(**small, prompt=PROMPT, seed=1, progress=False, probes={"trajectory": {"max_mb": 1e-6}})


# --- sweeps and backends ------------------------------------------------------------------------------
def test_sweep_records_probes_and_their_summaries_are_columns(pipe, tmp_path):
    sweep = wanlab.Sweep(base=dict(prompt=PROMPT, width=32, height=32, num_frames=5, steps=3),
                         grid={"flow_shift": [2.0, 6.0]}, seeds=[1], probes=["trajectory"])
    assert wanlab.Sweep.from_dict(sweep.to_dict()).probes == sweep.probes
    assert "probes = [\"trajectory\"]" in sweep.to_toml()
    plain = sweep.replace(probes=None)
    first = plain.run(pipe, tmp_path / "s", progress=False)  # stored without probes first
    assert "trajectory_decided_step" not in first.df.columns
    result = sweep.run(pipe, tmp_path / "s", progress=False)  # the same runs: probes added, frames kept
    df = result.df
    assert df["trajectory_decided_step"].between(0, 2).all()
    assert list(df["key"]) == list(first.df["key"])  # the same runs, the same frames (put checks the digest)
    store = wanlab.Store(tmp_path / "s")
    assert len(list(store.runs())) == 2
    assert all(store.get(key).probes()["trajectory"].steps == 3 for key in df["key"])


def test_wanlab_sweep_probes_flag(tmp_path, monkeypatch):
    from wanlab.cli import main

    (tmp_path / "s.toml").write_text('name = "s"\nmodel = "tiny"\n[base]\nprompt = "a red square"\nwidth = 32\n'
                                     'height = 32\nnum_frames = 5\nsteps = 2\n[grid]\nseed = [1]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "s.toml", "--store", "st", "--quiet", "--no-metrics", "--probes", "trajectory,features"]) == 0
    run = next(wanlab.Store(tmp_path / "st").runs())
    assert list(run.probes()) == ["trajectory", "features"]
    assert main(["sweep", "s.toml", "--store", "st2", "--quiet", "--probes", "nope"]) == 2


def test_sweep_probes_are_validated_and_refused_by_a_remote_backend(pipe, tmp_path):
    with pytest.raises(ProbeError, match="probes: must be names among"):
        wanlab.Sweep(base=dict(prompt=PROMPT), probes=["trajectroy"])

    class Remote:
        records_probes = False

        def __getattr__(self, name):
            return getattr(pipe, name)

    sweep = wanlab.Sweep(base=dict(prompt=PROMPT, width=32, height=32, num_frames=5, steps=2), seeds=[1],
                         probes=["features"])
    with pytest.raises(wanlab.ParamError, match=r"^probes: must be left out with Remote"):
        sweep.run(Remote(), tmp_path / "r", progress=False)


def test_the_client_refuses_probes_naming_the_field():
    from wanlab.client.remote import Remote

    remote = object.__new__(Remote)
    with pytest.raises(wanlab.ParamError, match=r"^probes: must be left out with a remote backend"):
        remote.generate(prompt=PROMPT, probes=["trajectory"])


# --- looking ------------------------------------------------------------------------------------------
def test_plots_draw_from_recorded_probes(runs, tmp_path):
    from wanlab.probes.plots import attention_overlay, feature_heatmap, overlay, trajectory_grid

    _, video, _ = runs
    fig = trajectory_grid(video.probes["trajectory"], n_steps=3, n_frames=2)
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel().startswith("step 0")
    fig = attention_overlay(video, ["red", "square"], n_frames=3)
    assert len(fig.axes) == 6 and fig.axes[3].get_ylabel() == "square"
    fig = feature_heatmap(video.probes["features"])
    assert fig.axes[0].get_xlabel() == "step"
    frame = np.zeros((4, 4, 3), np.uint8)
    assert overlay(frame, np.zeros((4, 4))).shape == (4, 4, 3)
    assert not np.array_equal(overlay(frame, np.ones((4, 4))), overlay(frame, np.zeros((4, 4))))
    with pytest.raises(ProbeError, match="attention_overlay needs"):
        attention_overlay(runs[0])


def test_probe_viewer_follows_its_sliders(runs):
    from wanlab.widgets import ProbeViewer

    _, video, _ = runs
    viewer = ProbeViewer(video)
    assert viewer.tabs.titles == ("trajectory", "attention", "features")
    before = viewer.preview_image.value
    viewer.step.value = 0
    assert viewer.preview_image.value != before and "step 0 / 3" in viewer.trajectory_caption.value
    att_before = viewer.attention_image.value
    viewer.word.value = "right"
    assert viewer.attention_image.value != att_before
    viewer.frame.value = 4
    assert "frame 4" in viewer.trajectory_caption.value
    with pytest.raises(ProbeError, match="must be recorded with probes"):
        ProbeViewer(runs[0])


def test_sweep_report_shows_the_decided_step(pipe, tmp_path):
    sweep = wanlab.Sweep(base=dict(prompt=PROMPT, width=32, height=32, num_frames=5, steps=3),
                         grid={"flow_shift": [2.0, 6.0]}, seeds=[1, 2], probes=["trajectory"], name="p")
    result = sweep.run(pipe, tmp_path / "s", progress=False)
    from wanlab.report import write_sweep_report

    page = write_sweep_report(result, tmp_path / "report").read_text()
    assert "when is the video decided?" in page and 'alt="trajectory grid"' in page
    assert 'alt="decided step vs flow_shift"' in page
    assert (tmp_path / "report" / "trajectory_grid.png").is_file()
