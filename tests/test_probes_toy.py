"""Known answer on the trained toy model: the attention maps of the caption's words point at the shape.

Twelve captions (every colour and shape, nine motions), the toy at its native size and 10 steps; the
pointing game (wanlab.probes.pointing) against the shape's mask from the frames (the shapes are
bright, the background dark). The figure is reported per word class; colour and shape must reach 70 %
and all classes must beat chance by a wide margin.
"""
from __future__ import annotations

import numpy as np
import pytest

from wanlab.probes.pointing import chance, pointing_game

pytestmark = pytest.mark.slow


def captions():
    from wanlab.toy.data import COLOURS, MOTIONS, SHAPES

    colours = list(COLOURS)
    out = []
    for i in range(12):
        direction, speed = MOTIONS[i % len(MOTIONS)]
        out.append((colours[i % len(colours)], SHAPES[i % len(SHAPES)], direction, speed))
    return out


def test_colour_and_shape_words_point_at_the_shape():
    import wanlab
    from wanlab.toy.data import caption

    pipe = wanlab.load("toy", progress=False)
    rates: dict[str, list[bool]] = {}
    base = []
    for i, (colour, shape, direction, speed) in enumerate(captions()):
        video = pipe.generate(prompt=caption(colour, shape, direction, speed), seed=100 + i, steps=10,
                              probes=["attention"], progress=False)
        attention = video.probes["attention"]
        masks = video.frames.max(axis=-1) > 110
        base.append(chance(attention, masks))
        words = {"colour": colour, "shape": shape, "direction": "still" if direction == "still" else direction,
                 "speed": speed or "standing"}
        for cls, word in words.items():
            rates.setdefault(cls, []).extend(pointing_game(attention, word, masks))
    report = {cls: float(np.mean(hits)) for cls, hits in rates.items()}
    print("pointing game per word class:", report, "chance:", round(float(np.mean(base)), 3))
    assert report["colour"] >= 0.7 and report["shape"] >= 0.7, report
    assert min(report.values()) > np.mean(base) + 0.2, (report, np.mean(base))
