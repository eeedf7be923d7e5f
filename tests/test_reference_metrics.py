"""Reference metrics (CLIP score, VBench's subject / background consistency and aesthetic quality):
formulas with known answers, and the loading code with seeded random-weight evaluators saved into a
local Hugging Face cache, scored through the functions users call and compared with reference code
(transformers' own CLIP similarity, torchmetrics' CLIPScore, VBench's per-frame loops) on the same weights."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from wanlab import metrics  # noqa: E402
from wanlab.metrics import evaluators as ev  # noqa: E402
from wanlab.metrics import random_evaluators as fake  # noqa: E402
from wanlab.metrics.reference import (  # noqa: E402
    clip_image_features,
    consistency_of,
    dino_features,
    resize_short,
    vbench_clip_transform,
    vbench_dino_transform,
)

#: Agreement with reference code on the same weights and inputs: float32 networks, batched vs one at a time.
TOL = 1e-4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A hub cache holding tiny random CLIP (as openai/clip-vit-base-patch32) and DINO-like ViT (as
    facebook/dino-vitb16); a CLIP with 768-d projections and a linear head for the aesthetic predictor."""
    root = tmp_path_factory.mktemp("evaluators")
    hub = root / "hub"
    clip = fake.into_hub_cache(fake.save_clip(root / "clip", seed=1), hub, ev.CLIP_B32.repo_id, "c" * 40)
    dino = fake.into_hub_cache(fake.save_vit(root / "dino", seed=2), hub, ev.DINO_B16.repo_id, "d" * 40)
    large = fake.save_clip(root / "large", seed=3, projection_dim=768)
    head = fake.save_aesthetic_head(root / "head" / ev.AESTHETIC_HEAD, seed=4)
    return {"hub": hub, "clip": clip, "dino": dino, "large": large, "head": head, "root": root}


@pytest.fixture
def hub(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(cache["hub"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ev.clear()
    yield cache
    ev.clear()


def video(seed=0, t=6, h=48, w=80):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# --- formulas ------------------------------------------------------------------------------------------
def test_consistency_known_answers():
    f = np.random.default_rng(0).normal(size=(1, 8))
    assert consistency_of(np.repeat(f, 7, 0)) == pytest.approx(1.0, abs=1e-12)
    assert consistency_of(np.repeat(f, 7, 0) * np.arange(1, 8)[:, None]) == pytest.approx(1.0, abs=1e-12)  # scale-free
    # frame k swapped for features g with cos(f, g) = c: frame k scores c, frame k+1 (1 + c) / 2, the rest 1
    g = np.random.default_rng(1).normal(size=(1, 8))
    c = float((f @ g.T)[0, 0] / np.linalg.norm(f) / np.linalg.norm(g))
    for T, k in ((7, 3), (5, 1)):
        feats = np.repeat(f, T, 0)
        feats[k] = g
        expected = ((T - 3) + max(c, 0) + (1 + max(c, 0)) / 2) / (T - 1)
        assert consistency_of(feats) == pytest.approx(expected, abs=1e-12)
    # the last frame swapped: only its own term drops
    feats = np.repeat(f, 5, 0)
    feats[-1] = g
    assert consistency_of(feats) == pytest.approx((3 + max(c, 0)) / 4, abs=1e-12)
    # opposite features count 0, not negative (VBench clamps each cosine at 0)
    assert consistency_of(np.array([[1.0, 0.0], [-1.0, 0.0]])) == 0.0
    # order matters (first and previous frame): a permutation changes it unless all frames agree
    feats = np.random.default_rng(2).normal(size=(6, 8))
    assert consistency_of(feats) != pytest.approx(consistency_of(feats[::-1]))
    with pytest.raises(ValueError, match="T >= 2"):
        consistency_of(f)


def test_clip_score_formula_is_torchmetrics():
    img = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    text = np.array([3.0, 0.0])
    assert metrics.reference.clip_score_of(img, text) == pytest.approx(100 * (1 + 0 + math.sqrt(0.5)) / 3)
    assert metrics.reference.clip_score_of(img[::-1], text) == metrics.reference.clip_score_of(img, text)
    assert metrics.reference.clip_score_of(-img, text) == 0.0  # the mean is clamped at 0


def test_vbench_preprocessing_shapes_and_values():
    x = torch.full((2, 3, 480, 832), 128, dtype=torch.uint8)
    assert tuple(resize_short(x, 224, "bilinear").shape) == (2, 3, 224, 388)  # int(224 * 832 / 480)
    dino = vbench_dino_transform(x)
    clip = vbench_clip_transform(x)
    assert tuple(dino.shape) == (2, 3, 224, 388) and tuple(clip.shape) == (2, 3, 224, 224)
    want = (128 / 255 - 0.485) / 0.229
    assert torch.allclose(dino[:, 0], torch.full_like(dino[:, 0], want))
    assert torch.allclose(clip[:, 2], torch.full_like(clip[:, 2], (128 / 255 - 0.40821073) / 0.27577711))
    portrait = resize_short(torch.zeros((1, 3, 832, 480), dtype=torch.uint8), 224, "bicubic")
    assert tuple(portrait.shape) == (1, 3, 388, 224)
    edge = torch.zeros((1, 3, 8, 8), dtype=torch.uint8)
    edge[..., 4:] = 255
    up = resize_short(edge, 16, "bicubic")  # bicubic overshoots: clamped and rounded to uint8 like torchvision
    assert up.dtype == torch.uint8 and int(up.min()) == 0 and int(up.max()) == 255


# --- loading -------------------------------------------------------------------------------------------
def test_missing_evaluator_is_one_sentence_with_the_download_command(hub):
    with pytest.raises(metrics.EvaluatorMissing) as err:
        metrics.subject_consistency(video(), model="facebook/dino-vits8")
    text = str(err.value)
    assert "`huggingface-cli download facebook/dino-vits8`" in text and str(hub["hub"]) in text
    assert text.count(". ") == 0 and "\n" not in text
    with pytest.raises(metrics.EvaluatorMissing, match="wget .*sa_0_4_vit_l_14_linear.pth"):
        metrics.aesthetic_quality(video(), model=str(hub["large"]), head=None)
    assert ev.resolve(ev.CLIP_B32.repo_id, "x") == hub["clip"] and ev.commit_of(hub["clip"]) == "c" * 40


def test_evaluators_load_once_per_process(hub):
    frames = video()
    metrics.background_consistency(frames)
    metrics.clip_score(frames, "a red square")
    assert len(ev.loaded_keys()) == 1  # both use openai/clip-vit-base-patch32
    first = ev.loaded(ev.CLIP_B32.repo_id, "clip", "x")[0]
    metrics.subject_consistency(frames)
    assert len(ev.loaded_keys()) == 2 and ev.loaded(ev.CLIP_B32.repo_id, "clip", "x")[0] is first
    assert not first.training and not any(p.requires_grad for p in first.parameters())


def test_clip_score_equals_transformers_and_torchmetrics(hub):
    from transformers import CLIPModel, CLIPProcessor

    frames, prompt = video(3, t=5), "hello world"  # a prompt these random weights score above 0 (not clamped)
    ours = metrics.clip_score(frames, prompt)
    assert ours > 1.0
    model = CLIPModel.from_pretrained(hub["clip"]).eval()
    processor = CLIPProcessor.from_pretrained(hub["clip"])
    inputs = processor(text=[prompt], images=list(frames), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
        cos = out.logits_per_image[:, 0] / model.logit_scale.exp()  # transformers' own CLIP similarity
    assert ours == pytest.approx(max(100 * float(cos.mean()), 0.0), abs=TOL)
    assert 0 <= ours <= 100
    assert metrics.clip_score(frames[::-1], prompt) == pytest.approx(ours, abs=TOL)  # frame order is irrelevant
    assert metrics.clip_score(frames, "a blue circle") != pytest.approx(ours, abs=TOL)
    long = " ".join(["hello world"] * 40)  # over 77 tokens: truncated, keeping the end token
    assert metrics.clip_score(frames, long) == pytest.approx(metrics.clip_score(frames, long + " more words"), abs=TOL)

    tm = pytest.importorskip("torchmetrics.multimodal.clip_score")

    class TensorFeatures(CLIPModel):  # torchmetrics 1.9 expects transformers 4's tensors from get_*_features
        def get_image_features(self, *a, **k):
            return super().get_image_features(*a, **k).pooler_output

        def get_text_features(self, *a, **k):
            return super().get_text_features(*a, **k).pooler_output

    score = tm.CLIPScore(model_name_or_path=lambda: (TensorFeatures.from_pretrained(hub["clip"]).eval(), processor))
    with torch.no_grad():
        reference = float(score(torch.from_numpy(frames).permute(0, 3, 1, 2), [prompt] * len(frames)))
    assert ours == pytest.approx(reference, abs=TOL)


def _vbench_loop(features_of, images):
    """VBench's subject_consistency / background_consistency loop (vbench 0.1.5, subject_consistency.py
    lines 49-64), one frame at a time with torch.nn.functional.cosine_similarity."""
    import torch.nn.functional as F

    video_sim, first, former = 0.0, None, None
    for i in range(len(images)):
        feat = F.normalize(features_of(images[i].unsqueeze(0)), dim=-1, p=2)
        if i == 0:
            first = feat
        else:
            video_sim += (max(0.0, F.cosine_similarity(former, feat).item())
                          + max(0.0, F.cosine_similarity(first, feat).item())) / 2
        former = feat
    return video_sim / (len(images) - 1)


def test_subject_consistency_equals_vbench_loop_and_known_answers(hub):
    from transformers import ViTModel

    frames = video(5, t=6, h=48, w=80)
    ours = metrics.subject_consistency(frames)
    vit = ViTModel.from_pretrained(hub["dino"], add_pooling_layer=False).eval()
    images = vbench_dino_transform(torch.from_numpy(frames).permute(0, 3, 1, 2))
    with torch.no_grad():
        ref = _vbench_loop(lambda x: vit(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0], images)
    assert ours == pytest.approx(ref, abs=TOL)
    still = np.repeat(frames[:1], 5, 0)
    assert metrics.subject_consistency(still) == pytest.approx(1.0, abs=1e-6)
    swapped = still.copy()
    swapped[2] = frames[3]
    feats = dino_features(swapped)
    c = float(torch.nn.functional.cosine_similarity(feats[0:1], feats[2:3]))
    assert metrics.subject_consistency(swapped) == pytest.approx((2 + max(c, 0) + (1 + max(c, 0)) / 2) / 4, abs=1e-5)
    assert metrics.subject_consistency(swapped) < 1.0
    assert metrics.subject_consistency(frames, batch_size=2) == pytest.approx(ours, abs=TOL)  # batching changes nothing
    assert metrics.subject_consistency(frames, model=str(hub["dino"])) == pytest.approx(ours, abs=TOL)  # a folder


def test_background_consistency_equals_vbench_loop(hub):
    from transformers import CLIPModel

    frames = video(6, t=5, h=64, w=40)
    ours = metrics.background_consistency(frames)
    model = CLIPModel.from_pretrained(hub["clip"]).eval()
    images = vbench_clip_transform(torch.from_numpy(frames).permute(0, 3, 1, 2))
    with torch.no_grad():
        ref = _vbench_loop(lambda x: model.get_image_features(pixel_values=x).pooler_output, images)
    assert ours == pytest.approx(ref, abs=TOL)
    assert metrics.background_consistency(np.repeat(frames[:1], 4, 0)) == pytest.approx(1.0, abs=1e-6)


def test_aesthetic_quality_equals_vbench_and_ignores_frame_order(hub):
    from transformers import CLIPModel

    frames = video(7, t=5)
    ours = metrics.aesthetic_quality(frames, model=str(hub["large"]), head=str(hub["head"]))
    model = CLIPModel.from_pretrained(hub["large"]).eval()
    head = torch.nn.Linear(768, 1)
    head.load_state_dict(torch.load(hub["head"]))
    with torch.no_grad():  # vbench aesthetic_quality.py lines 58-72
        feats = model.get_image_features(pixel_values=vbench_clip_transform(
            torch.from_numpy(frames).permute(0, 3, 1, 2))).pooler_output
        ref = float((head(torch.nn.functional.normalize(feats, dim=-1, p=2)).squeeze(-1) / 10).mean())
    assert ours == pytest.approx(ref, abs=TOL)
    assert metrics.aesthetic_quality(frames[::-1], model=str(hub["large"]), head=str(hub["head"])) == pytest.approx(
        ours, abs=TOL)
    with pytest.raises(ValueError, match="head takes 768"):
        # the 16-d tiny CLIP B/32 does not fit the head
        metrics.aesthetic_quality(frames, model=ev.CLIP_B32.repo_id, head=str(hub["head"]))


def test_quality_runs_several_and_checks_names(hub):
    frames = video(8)
    got = metrics.quality(frames, "a red square", ["clip_score", "subject_consistency"])
    assert got == {"clip_score": pytest.approx(metrics.clip_score(frames, "a red square"), abs=TOL),
                   "subject_consistency": pytest.approx(metrics.subject_consistency(frames), abs=TOL)}
    with pytest.raises(ValueError, match="metrics: must be among"):
        metrics.quality(frames, "x", ["imaging_quality"])
    assert clip_image_features(frames).shape == (len(frames), 16)
