"""The toy model's data: synthetic captioned clips of one moving shape, with the ground truth alongside.

Holds the vocabulary (colours, shapes, motions, :data:`WORDS`), the 135 captions and the 15
held out of training (:data:`HELD_OUT`), :func:`caption` / :func:`parse_caption`, and
:func:`make_clip`, which renders a :class:`Clip` (how a clip looks is described there).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Shape colours in RGB; clips jitter each channel by up to +-COLOUR_JITTER.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45), "green": (45, 200, 70), "blue": (60, 100, 240),
    "yellow": (235, 215, 45), "white": (235, 235, 235),
}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = ("right", "left", "up", "down")
#: Speed word -> px/frame. A still shape has speed class "still".
SPEEDS: dict[str, float] = {"slowly": 1.25, "quickly": 2.5}
#: Unit vector (dx, dy) in image coordinates (y points down).
DIRECTION_VECTORS: dict[str, tuple[int, int]] = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
COLOUR_JITTER = 12
BACKGROUND_MAX = 50  # background channels are uniform in 0..BACKGROUND_MAX
SIZE_RANGE = (14.0, 20.0)  # side / diameter / triangle base (= height), px at 64x64
WIDTH = HEIGHT = 64
NUM_FRAMES = 17

#: (direction, speed word); ("still", None) for a shape standing still. 9 motions.
MOTIONS: tuple[tuple[str, str | None], ...] = tuple(
    [(d, s) for d in DIRECTIONS for s in SPEEDS] + [("still", None)]
)
WORDS = ("a", *COLOURS, *SHAPES, "moving", *DIRECTIONS, *SPEEDS, "standing", "still")


def caption(colour: str, shape: str, direction: str, speed: str | None) -> str:
    """The caption of a clip: ``"a red square moving right quickly"`` / ``"a red square standing still"``.

    Args:
        colour: A key of :data:`COLOURS`.
        shape: One of :data:`SHAPES`.
        direction: One of :data:`DIRECTIONS`, or ``"still"``.
        speed: A key of :data:`SPEEDS`; ignored (``None``) for ``"still"``.

    Returns:
        The caption; the words are not checked (:func:`parse_caption` checks them).

    Example:
        >>> caption("red", "square", "right", "quickly")
        'a red square moving right quickly'
        >>> caption("blue", "circle", "still", None)
        'a blue circle standing still'
    """
    if direction == "still":
        return f"a {colour} {shape} standing still"
    return f"a {colour} {shape} moving {direction} {speed}"


def parse_caption(text: str) -> dict[str, Any]:
    """Attributes named by a caption (inverse of :func:`caption`).

    Args:
        text: A caption; surrounding whitespace is ignored.

    Returns:
        ``{"colour", "shape", "direction", "speed"}``; ``direction`` and ``speed`` are ``"still"`` for a
        shape standing still.

    Raises:
        ValueError: ``text`` is not a toy caption (wrong pattern or a word outside the vocabulary).

    Example:
        >>> parse_caption("a red square moving right quickly")
        {'colour': 'red', 'shape': 'square', 'direction': 'right', 'speed': 'quickly'}
        >>> parse_caption("a blue circle standing still")["speed"]
        'still'
        >>> parse_caption("a purple square standing still")
        Traceback (most recent call last):
        ValueError: not a toy caption: 'a purple square standing still'
    """
    words = text.strip().split()
    if len(words) == 5 and words[0] == "a" and words[3:] == ["standing", "still"]:
        colour, shape, direction, speed = words[1], words[2], "still", None
    elif len(words) == 6 and words[0] == "a" and words[3] == "moving":
        colour, shape, direction, speed = words[1], words[2], words[4], words[5]
    else:
        raise ValueError(f"not a toy caption: {text!r}")
    if colour not in COLOURS or shape not in SHAPES or (direction != "still" and (
            direction not in DIRECTIONS or speed not in SPEEDS)):
        raise ValueError(f"not a toy caption: {text!r}")
    return {"colour": colour, "shape": shape, "direction": direction, "speed": speed or "still"}


def all_captions() -> list[str]:
    """All 135 captions, in a fixed order (colour, shape, motion).

    Returns:
        5 colours x 3 shapes x 9 motions (:data:`MOTIONS`) captions.

    Example:
        >>> captions = all_captions()
        >>> len(captions), captions[0], len(HELD_OUT), len(TRAIN_CAPTIONS)
        (135, 'a red square moving right slowly', 15, 120)
    """
    return [caption(c, s, d, v) for c, s, (d, v) in itertools.product(COLOURS, SHAPES, MOTIONS)]


def _held_out() -> tuple[str, ...]:
    # One motion per (colour, shape) pair: 15 captions, each motion held out for one or two pairs,
    # every single word still seen in training.
    out = []
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            d, v = MOTIONS[(ci * 3 + si * 4 + ci) % len(MOTIONS)]
            out.append(caption(colour, shape, d, v))
    return tuple(out)


#: Captions never shown to any training stage (evaluated separately: generalisation).
HELD_OUT: tuple[str, ...] = _held_out()
TRAIN_CAPTIONS: tuple[str, ...] = tuple(c for c in all_captions() if c not in HELD_OUT)


@dataclass
class Clip:
    """One clip: uint8 frames (T, H, W, 3), the shape's coverage (T, H, W) in [0, 1], and its truth.

    Attributes:
        frames: ``numpy.uint8`` frames ``(T, H, W, 3)``.
        coverage: ``float32`` ``(T, H, W)``: the fraction of each pixel the shape covers.
        caption: The clip's caption.
        truth: What :func:`make_clip` drew: the :func:`parse_caption` attributes plus ``speed_px``
            (px/frame), ``size`` (px), ``centres`` (one ``(x, y)`` per frame), ``colour_rgb`` and
            ``background_rgb``.

    Example:
        >>> clip = make_clip(clip_seed(0, 0, 0), "a red square moving right quickly")
        >>> clip.frames.shape, clip.truth["speed_px"]
        ((17, 64, 64, 3), 2.5)
    """

    frames: np.ndarray
    coverage: np.ndarray
    caption: str
    truth: dict[str, Any] = field(default_factory=dict)


def _coverage(shape: str, cx: float, cy: float, size: float, h: int, w: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape (analytic anti-aliasing, ~1 px ramp)."""
    ys = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
    r = size / 2.0
    if shape == "square":
        cov = np.clip(r - np.abs(xs - cx) + 0.5, 0, 1) * np.clip(r - np.abs(ys - cy) + 0.5, 0, 1)
    elif shape == "circle":
        cov = np.clip(r - np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) + 0.5, 0, 1)
    elif shape == "triangle":
        # Isosceles, apex up: apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r).
        base = (cy + r) - ys
        norm = np.hypot(2.0, 1.0)  # edges have slope 2 (height 2r over half-base r)
        left = (2.0 * (xs - (cx - r)) - ((cy + r) - ys)) / norm
        right = (2.0 * ((cx + r) - xs) - ((cy + r) - ys)) / norm
        # distance to each edge, positive inside; base edge distance along y
        d = np.minimum(np.minimum(base, left * np.ones_like(xs)), right)
        cov = np.clip(d + 0.5, 0, 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return cov


def make_clip(rng: np.random.Generator, text: str | None = None, *, width: int = WIDTH, height: int = HEIGHT,
              num_frames: int = NUM_FRAMES, captions: tuple[str, ...] = TRAIN_CAPTIONS) -> Clip:
    """Render one clip: ``text`` (a caption) or one drawn from ``captions``; all else drawn from ``rng``.

    A clip is ``num_frames`` RGB frames (default 17 at 64x64) of one shape (square, circle or
    triangle pointing up) in one of five colours (each channel jittered by up to
    :data:`COLOUR_JITTER`) on a random dark uniform background, moving right, left, up or down at
    1.25 ("slowly") or 2.5 ("quickly") px/frame, or standing still. Sizes and speeds are for 64x64
    and scale with the smaller side. The start is drawn so the whole shape stays in every frame.
    Edges are anti-aliased analytically (pixel coverage), so sub-pixel positions render smoothly.

    Args:
        rng: The generator every random choice is drawn from (:func:`clip_seed` makes one per clip).
        text: The caption to render; ``None`` draws one from ``captions``.
        width: Frame width in px.
        height: Frame height in px.
        num_frames: Frames per clip.
        captions: The captions to draw from when ``text`` is ``None`` (default: :data:`TRAIN_CAPTIONS`).

    Returns:
        The :class:`Clip`, with its ground truth.

    Raises:
        ValueError: ``text`` is not a toy caption.

    Example:
        >>> clip = make_clip(np.random.default_rng(0), "a green circle moving up slowly")
        >>> clip.frames.dtype, clip.coverage.shape, clip.truth["direction"], clip.truth["speed_px"]
        (dtype('uint8'), (17, 64, 64), 'up', 1.25)
        >>> make_clip(np.random.default_rng(0), width=128, height=128, num_frames=9).frames.shape
        (9, 128, 128, 3)
    """
    if text is None:
        text = captions[int(rng.integers(len(captions)))]
    attrs = parse_caption(text)
    scale = min(width, height) / 64.0
    size = float(rng.uniform(*SIZE_RANGE)) * scale
    speed = SPEEDS.get(attrs["speed"], 0.0) * scale
    dx, dy = DIRECTION_VECTORS.get(attrs["direction"], (0, 0))
    travel = speed * (num_frames - 1)
    margin = size / 2.0 + 1.0

    def start(extent: int, d: int) -> float:
        lo, hi = margin, extent - margin
        if d > 0:
            hi -= travel
        elif d < 0:
            lo += travel
        return float(rng.uniform(lo, hi))

    cx0, cy0 = start(width, dx), start(height, dy)
    colour = np.clip(np.array(COLOURS[attrs["colour"]], np.float64)
                     + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
    background = rng.integers(0, BACKGROUND_MAX + 1, 3).astype(np.float64)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    coverage = np.empty((num_frames, height, width), np.float32)
    centres = []
    for t in range(num_frames):
        cx, cy = cx0 + dx * speed * t, cy0 + dy * speed * t
        cov = _coverage(attrs["shape"], cx, cy, size, height, width)
        frames[t] = np.round(background * (1.0 - cov[..., None]) + colour * cov[..., None]).astype(np.uint8)
        coverage[t] = cov
        centres.append((cx, cy))
    truth = {**attrs, "speed_px": speed, "size": size, "centres": centres,
             "colour_rgb": colour.astype(int).tolist(), "background_rgb": background.astype(int).tolist()}
    return Clip(frames, coverage, text, truth)


def clip_seed(seed: int, stage: int, index: int) -> np.random.Generator:
    """The generator of one clip: a pure function of (seed, stage, index), so runs resume exactly.

    Args:
        seed: The recipe's seed.
        stage: A number per training stage, so stages draw different clips.
        index: The clip's index within the stage.

    Returns:
        ``numpy.random.default_rng([seed, stage, index])``.

    Example:
        >>> a = make_clip(clip_seed(1, 2, 3)).frames
        >>> b = make_clip(clip_seed(1, 2, 3)).frames
        >>> bool((a == b).all())
        True
    """
    return np.random.default_rng([seed, stage, index])

