"""wanlab.metrics.adherence: the toy's captions checked against the frames, with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from wanlab.errors import ParamError
from wanlab.metrics import ADHERENCE_KEYS, adherence
from wanlab.toy import data

#: One caption per motion and per colour/shape, so every attribute value is covered (27 clips).
CAPTIONS = [data.caption(c, s, d, v) for i, (c, s) in enumerate((c, s) for c in data.COLOURS for s in data.SHAPES)
            for d, v in data.MOTIONS[i % 9:i % 9 + 2]]


def _other(attr: str, value: str) -> str:
    options = {"colour": list(data.COLOURS), "shape": list(data.SHAPES)}[attr]
    return next(o for o in options if o != value)


@pytest.mark.parametrize("i", range(0, len(CAPTIONS), 3))
def test_ground_truth_clips_adhere_fully_to_their_caption(i):
    for text in CAPTIONS[i:i + 3]:
        clip = data.make_clip(np.random.default_rng([7, i]), text)
        scores = adherence(clip.frames, text)
        assert list(scores) == list(ADHERENCE_KEYS)
        assert scores == {k: 1.0 for k in ADHERENCE_KEYS}, text


def test_every_ground_truth_clip_of_the_vocabulary_adheres():
    bad = []
    for j, text in enumerate(data.all_captions()):
        clip = data.make_clip(np.random.default_rng([11, j]), text)
        if adherence(clip, text)["adherence"] != 1.0:
            bad.append(text)
    assert bad == []


def test_a_caption_with_another_attribute_fails_that_attribute_alone():
    text = "a green circle moving down slowly"
    clip = data.make_clip(np.random.default_rng(3), text)
    changed = {
        "colour": "a red circle moving down slowly",
        "shape": "a green triangle moving down slowly",
        "direction": "a green circle moving up slowly",
        "speed": "a green circle moving down quickly",
    }
    for attr, other in changed.items():
        scores = adherence(clip.frames, other)
        assert scores[f"adherence_{attr}"] == 0.0, other
        assert all(scores[f"adherence_{a}"] == 1.0 for a in changed if a != attr), (other, scores)
        assert scores["adherence"] == 0.75
        assert scores["adherence_visible"] == 1.0
    still = adherence(clip.frames, "a green circle standing still")  # direction and speed both wrong
    assert (still["adherence_direction"], still["adherence_speed"], still["adherence"]) == (0.0, 0.0, 0.5)


def test_a_still_clip_and_a_blank_video():
    clip = data.make_clip(np.random.default_rng(4), "a white square standing still")
    assert adherence(clip.frames, "  a white square   standing still ")["adherence"] == 1.0
    assert adherence(clip.frames, "a white square moving left slowly")["adherence_speed"] == 0.0
    blank = np.full((17, 64, 64, 3), 20, np.uint8)
    scores = adherence(blank, "a white square standing still")
    assert scores["adherence_colour"] == scores["adherence_shape"] == scores["adherence_visible"] == 0.0


def test_prompts_outside_the_vocabulary_are_one_sentence_errors_naming_the_words():
    frames = data.make_clip(np.random.default_rng(0), "a red square moving right quickly").frames
    with pytest.raises(ParamError) as err:
        adherence(frames, "a cat walking on a red fence")
    message = str(err.value)
    assert message.startswith("prompt: ") and "'cat', 'walking', 'on', 'fence'" in message
    assert "'red'" not in message.split("known:")[0] and message.count("\n") == 0
    with pytest.raises(ParamError, match="unknown word: 'Red'"):
        adherence(frames, "a Red square moving right quickly")
    with pytest.raises(ParamError, match="standing still"):  # known words, not a caption
        adherence(frames, "a square red moving right quickly")
    with pytest.raises(ParamError, match="video: must be uint8 frames"):
        adherence(frames.astype(np.float32), "a red square moving right quickly")
