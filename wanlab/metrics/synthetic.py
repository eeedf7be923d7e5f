"""Synthetic videos whose motion is known exactly, to validate the metrics (tests, benchmarks, docs).

A scene (:func:`scene`) is a smooth random RGB texture as background, optionally panning, with
optionally a differently textured rectangle moving over it along a trajectory (:func:`linear`,
:func:`jittered`, :func:`random_steps`: the rectangle's top-left corner per frame).

Example::

    from wanlab.metrics import synthetic
    video = synthetic.scene(synthetic.linear(16, 33))       # 832x480, a square moving 16 px/frame
    pan = synthetic.scene(pan=synthetic.linear(3, 81, start=(0, 0)), noise=2.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Where trajectories start: the rectangle's top-left corner, px (x right, y down).
START = (40.0, 180.0)
Trajectory = list[tuple[float, float]]


def texture(h: int, w: int, *, sigma: float = 3.0, contrast: float = 40.0, mean: float = 128.0,
            seed: int = 0) -> np.ndarray:
    """A periodic texture: white noise blurred by a Gaussian (in the Fourier domain).

    Args:
        h: Height.
        w: Width.
        sigma: The Gaussian's sd in px.
        contrast: The texture's sd.
        mean: Its mean.
        seed: The noise's seed.

    Returns:
        (h, w, 3) float64.

    Example:
        >>> round(float(texture(32, 32, mean=120.0).mean()), 6)
        120.0
    """
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(h)[:, None, None]
    kx = np.fft.fftfreq(w)[None, :, None]
    spec = np.fft.fft2(rng.standard_normal((h, w, 3)), axes=(0, 1))
    spec *= np.exp(-2 * (np.pi * sigma) ** 2 * (kx**2 + ky**2))
    tex = np.fft.ifft2(spec, axes=(0, 1)).real
    return (tex - tex.mean()) / tex.std() * contrast + mean


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """A periodic image with its content moved, exact for any sub-pixel shift (Fourier shift theorem).

    Args:
        image: (h, w, ...) periodic image.
        dx: px right.
        dy: px down.

    Returns:
        The moved image (float64; integer shifts are a roll).

    Example:
        >>> img = texture(16, 16)
        >>> bool(np.allclose(shifted(shifted(img, 2.5, 0), -2.5, 0), img))
        True
    """
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
    """A video with exactly known motion.

    Sub-pixel positions are rendered exactly: textures are moved with the Fourier shift theorem and
    the rectangle's edges are anti-aliased by their pixel coverage. Background mean 120, rectangle
    mean 140, both with sd ``contrast``; values are rounded and clipped to 0..255.

    Args:
        positions: ``positions[t]``: top-left corner (x, y) of a textured ``object_size`` (w, h)
            rectangle in frame t (None: no rectangle).
        pan: ``pan[t]``: how far the background has moved (dx, dy) by frame t (None: still).
        frames: T when neither is given.
        width: Frame width.
        height: Frame height.
        object_size: The rectangle's (w, h).
        background_sigma: The background texture's blur, px.
        object_sigma: The rectangle texture's blur, px.
        contrast: The textures' sd.
        brightness: ``brightness[t]``: levels added to frame t (flicker).
        noise: sd of Gaussian noise added per pixel and frame.
        seed: The textures' and noise's seed.

    Returns:
        uint8 (T, height, width, 3).

    Raises:
        ValueError: ``positions``, ``pan``, ``brightness`` and ``frames`` give different frame counts (or none).

    Example:
        >>> scene(pan=linear(3, 5, start=(0, 0)), width=64, height=32).shape
        (5, 32, 64, 3)
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
    """Constant velocity: ``speed`` px/frame along ``direction``.

    Args:
        speed: px/frame.
        frames: T.
        start: The first position (x, y).
        direction: A unit vector (rightwards by default).

    Returns:
        T positions (x, y).

    Example:
        >>> linear(2, 3, start=(0, 0))
        [(0.0, 0.0), (2.0, 0.0), (4.0, 0.0)]
    """
    ux, uy = direction
    return [(start[0] + speed * ux * t, start[1] + speed * uy * t) for t in range(frames)]


def jittered(speed: float, frames: int, *, amount: float = 0.5, seed: int = 0,
             start: tuple[float, float] = START) -> Trajectory:
    """Rightward steps of ``speed * U(1 - amount, 1 + amount)`` px: the same mean speed as :func:`linear`, jittered.

    Args:
        speed: Mean px/frame.
        frames: T.
        amount: The jitter's relative half-width.
        seed: The steps' seed.
        start: The first position (x, y).

    Returns:
        T positions (x, y).

    Example:
        >>> len(jittered(4, 9))
        9
    """
    steps = speed * np.random.default_rng(seed).uniform(1 - amount, 1 + amount, frames - 1)
    return _from_steps(steps, start)


def random_steps(low: float, high: float, frames: int, *, seed: int = 0,
                 start: tuple[float, float] = START) -> Trajectory:
    """Rightward steps drawn uniformly from [low, high] px: jerky motion.

    Args:
        low: The smallest step, px.
        high: The largest step, px.
        frames: T.
        seed: The steps' seed.
        start: The first position (x, y).

    Returns:
        T positions (x, y).

    Example:
        >>> len(random_steps(0, 8, 9))
        9
    """
    return _from_steps(np.random.default_rng(seed).uniform(low, high, frames - 1), start)


def _from_steps(steps: np.ndarray, start: tuple[float, float]) -> Trajectory:
    xs = start[0] + np.concatenate([[0.0], np.cumsum(steps)])
    return [(float(x), start[1]) for x in xs]
