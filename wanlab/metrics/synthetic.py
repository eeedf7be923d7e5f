"""Synthetic videos whose motion is known exactly, to validate the metrics (tests, benchmarks, docs).

A scene is a smooth random RGB texture (Gaussian-filtered white noise, periodic) as background,
optionally panning, with optionally a differently textured rectangle moving over it. Sub-pixel
positions are rendered exactly: textures are moved with the Fourier shift theorem and the
rectangle's edges are anti-aliased by their pixel coverage. Trajectories (:func:`linear`,
:func:`jittered`, :func:`random_steps`) give the rectangle's top-left corner per frame.

Example::

    from wanlab.metrics import synthetic
    video = synthetic.scene(synthetic.linear(16, 33))       # 832x480, a square moving 16 px/frame
    pan = synthetic.scene(pan=synthetic.linear(3, 81, start=(0, 0)), noise=2.0)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Where trajectories start: the rectangle's top-left corner, px (x right, y down).
START = (40.0, 180.0)
Trajectory = list[tuple[float, float]]


def texture(h: int, w: int, *, sigma: float = 3.0, contrast: float = 40.0, mean: float = 128.0,
            seed: int = 0) -> np.ndarray:
    """(h, w, 3) float64 periodic texture: white noise blurred by a Gaussian of ``sigma`` px, sd ``contrast`` around ``mean``."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    spec = np.fft.fft2(rng.standard_normal((h, w, 3)), axes=(0, 1))
    spec *= np.exp(-2 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    tex = np.fft.ifft2(spec, axes=(0, 1)).real
    return (tex - tex.mean()) / tex.std() * contrast + mean


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` (periodic) with its content moved ``dx`` px right and ``dy`` px down; exact for any sub-pixel shift."""
    if float(dx).is_integer() and float(dy).is_integer():
        return np.roll(image, (int(dy), int(dx)), axis=(0, 1))
    h, w = image.shape[:2]
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    phase = np.exp(-2j * np.pi * (kx * dx + ky * dy))
    return np.fft.ifft2(np.fft.fft2(image, axes=(0, 1)) * phase, axes=(0, 1)).real


def _coverage(n: int, start: float, size: float) -> np.ndarray:
    """Share of each of ``n`` pixels covered by the interval [start, start + size)."""
    c = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(c + 1, start + size) - np.maximum(c, start), 0.0, 1.0)


def scene(positions: Sequence[tuple[float, float]] | None = None, pan: Sequence[tuple[float, float]] | None = None,
          *, frames: int | None = None, width: int = 832, height: int = 480, object_size: tuple[int, int] = (160, 120),
          background_sigma: float = 3.0, object_sigma: float = 2.0, contrast: float = 40.0,
          brightness: Sequence[float] | None = None, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """uint8 (T, height, width, 3) video with exactly known motion.

    ``positions[t]``: top-left corner (x, y) of a textured ``object_size`` (w, h) rectangle in
    frame t (None: no rectangle); ``pan[t]``: how far the background has moved (dx, dy) by frame
    t (None: still); ``frames``: T when neither is given. ``brightness[t]``: levels added to
    frame t (flicker); ``noise``: sd of Gaussian noise added per pixel and frame. Background mean
    120, rectangle mean 140, both with sd ``contrast``; values are rounded and clipped to 0..255.
    """
    lengths = {len(s) for s in (positions, pan, brightness) if s is not None} | ({frames} if frames else set())
    if len(lengths) != 1:
        raise ValueError(f"positions, pan, brightness, frames: must give one frame count; got {sorted(lengths)}")
    count = lengths.pop()
    rng = np.random.default_rng(seed + 7)
    margin = 32
    canvas = texture(height + 2 * margin, width + 2 * margin, sigma=background_sigma, contrast=contrast, mean=120.0,
                     seed=seed)
    ow, oh = object_size
    pad = 8
    tile = texture(oh + 2 * pad, ow + 2 * pad, sigma=object_sigma, contrast=contrast, mean=140.0, seed=seed + 1000)
    out = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        dx, dy = pan[t] if pan is not None else (0.0, 0.0)
        frame = shifted(canvas, dx, dy)[margin:margin + height, margin:margin + width]
        if positions is not None:
            x, y = positions[t]
            ix, iy = int(np.floor(x)), int(np.floor(y))
            moved = shifted(tile, x - ix, y - iy)
            layer = np.zeros_like(frame)
            y0, x0 = iy - pad, ix - pad
            ys, xs = max(0, y0), max(0, x0)
            ye, xe = min(height, y0 + tile.shape[0]), min(width, x0 + tile.shape[1])
            if ye > ys and xe > xs:
                layer[ys:ye, xs:xe] = moved[ys - y0:ye - y0, xs - x0:xe - x0]
            cover = _coverage(height, y, oh)[:, None, None] * _coverage(width, x, ow)[None, :, None]
            frame = frame * (1.0 - cover) + layer * cover
        if brightness is not None:
            frame = frame + brightness[t]
        if noise:
            frame = frame + rng.normal(0.0, noise, frame.shape)
        out[t] = np.clip(np.rint(frame), 0, 255)
    return out


def linear(speed: float, frames: int, *, start: tuple[float, float] = START,
           direction: tuple[float, float] = (1.0, 0.0)) -> Trajectory:
    """Constant velocity: ``speed`` px/frame along ``direction`` (a unit vector; rightwards by default)."""
    ux, uy = direction
    return [(start[0] + speed * ux * t, start[1] + speed * uy * t) for t in range(frames)]


def jittered(speed: float, frames: int, *, amount: float = 0.5, seed: int = 0,
             start: tuple[float, float] = START) -> Trajectory:
    """Rightward steps of ``speed * U(1 - amount, 1 + amount)`` px: the same mean speed as :func:`linear`, jittered."""
    steps = speed * np.random.default_rng(seed).uniform(1 - amount, 1 + amount, frames - 1)
    return _from_steps(steps, start)


def random_steps(low: float, high: float, frames: int, *, seed: int = 0,
                 start: tuple[float, float] = START) -> Trajectory:
    """Rightward steps drawn uniformly from [low, high] px: jerky motion."""
    return _from_steps(np.random.default_rng(seed).uniform(low, high, frames - 1), start)


def _from_steps(steps: np.ndarray, start: tuple[float, float]) -> Trajectory:
    xs = start[0] + np.concatenate([[0.0], np.cumsum(steps)])
    return [(float(x), start[1]) for x in xs]
