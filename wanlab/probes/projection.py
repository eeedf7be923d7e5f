"""The latent-to-RGB projection trajectory previews use (ComfyUI's ``latent_rgb_factors`` previews).

``rgb = latent @ factors + bias`` per latent cell, then ``(rgb + 1) * 127.5`` clipped to uint8.

:func:`projection_for` picks a model's projection; :func:`fit` fits one; ``python -m
wanlab.probes.projection toy`` refits the built-ins' (stored in ``projections.json``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

STORED = Path(__file__).with_name("projections.json")

#: ComfyUI comfy/latent_formats.py, class Wan21: latent_rgb_factors (16 x 3) and latent_rgb_factors_bias.
WAN21_FACTORS = [
    [-0.1299, -0.1692, 0.2932], [0.0671, 0.0406, 0.0442], [0.3568, 0.2548, 0.1747], [0.0372, 0.2344, 0.1420],
    [0.0313, 0.0189, -0.0328], [0.0296, -0.0956, -0.0665], [-0.3477, -0.4059, -0.2925], [0.0166, 0.1902, 0.1975],
    [-0.0412, 0.0267, -0.1364], [-0.1293, 0.0740, 0.1636], [0.0680, 0.3019, 0.1128], [0.0032, 0.0581, 0.0639],
    [-0.1251, 0.0927, 0.1699], [0.0060, -0.0633, 0.0005], [0.3477, 0.2275, 0.2950], [0.1984, 0.0913, 0.1861],
]
WAN21_BIAS = [-0.1835, -0.0868, -0.3360]
#: Captions the built-ins' projections are fitted on (each colour and shape of the toy's world).
FIT_PROMPTS = ["a red square moving right quickly", "a blue circle moving left slowly",
               "a yellow triangle moving up quickly", "a green circle moving down slowly",
               "a white square standing still", "a red triangle moving left quickly"]


def cell_means(frames: np.ndarray, grid: tuple[int, int, int], temporal: int) -> np.ndarray:
    """Frames averaged over each latent cell, in [-1, 1].

    Args:
        frames: uint8 ``(T, H, W, 3)``.
        grid: The latent grid ``(T', H', W')``.
        temporal: The VAE's temporal factor.

    Returns:
        float64 ``(T', H', W', 3)``.

    Example:
        >>> cell_means(np.full((5, 16, 16, 3), 255, np.uint8), (2, 2, 2), 4).shape
        (2, 2, 2, 3)
    """
    from .results import latent_frame_index

    t_lat, h_lat, w_lat = grid
    index = latent_frame_index(frames.shape[0], temporal)
    x = frames.astype(np.float64) / 127.5 - 1.0
    t, h, w, _ = x.shape
    x = x.reshape(t, h_lat, h // h_lat, w_lat, w // w_lat, 3).mean(axis=(2, 4))
    return np.stack([x[index == k].mean(axis=0) for k in range(t_lat)])


def fit(latents: list[np.ndarray], frames: list[np.ndarray], temporal: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares projection from normalised latents to the cell means of the frames they decode to.

    Args:
        latents: Latents ``(1, C, T', H', W')``, one per video.
        frames: The uint8 frames each decodes to.
        temporal: The VAE's temporal factor.

    Returns:
        ``factors`` float32 ``(C, 3)`` and ``bias`` float32 ``(3,)``.

    Example:
        >>> factors, bias = fit(lats, frames, 4)  # doctest: +SKIP
    """
    xs, ys = [], []
    for lat, fr in zip(latents, frames):
        lat = np.asarray(lat, np.float64)[0]
        c = lat.shape[0]
        xs.append(lat.reshape(c, -1).T)
        ys.append(cell_means(fr, lat.shape[1:], temporal).reshape(-1, 3))
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def stored() -> dict[str, Any]:
    """The built-ins' fitted projections, by model fingerprint.

    Returns:
        The content of ``projections.json`` (empty when it is missing).
    """
    try:
        return json.loads(STORED.read_text())
    except FileNotFoundError:
        return {}


def projection_for(pipeline: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """The projection of a :class:`wanlab.Pipeline`'s model (cached on the pipeline).

    - Wan 2.1's 16-channel VAE (real Wan): the published factors of ComfyUI's
      ``comfy/latent_formats.py`` (class ``Wan21``).
    - Built-in models: factors fitted by least squares from each model's normalised clean latents to
      its VAE's frames, averaged over each latent cell (:func:`fit`), stored in ``projections.json``
      beside this module with the model's fingerprint; refit with ``python -m wanlab.probes.projection toy``.
    - Any other model: fitted on first use from latents drawn N(0, 1) and decoded by its VAE.

    Args:
        pipeline: A loaded pipeline.

    Returns:
        ``(factors, bias, name)``, the name saying where they came from (``comfyui:Wan21``, ``fitted:toy``, ...).

    Example:
        >>> factors, bias, name = projection_for(wanlab.load("toy"))  # doctest: +SKIP
        >>> name  # doctest: +SKIP
        'fitted:toy'
    """
    cached = getattr(pipeline, "_probe_projection", None)
    if cached is not None:
        return cached
    entry = stored().get(pipeline.fingerprint)
    z_dim = int(pipeline.diffusers.vae.config.z_dim)
    if entry is not None and len(entry["factors"]) == z_dim:
        out = (np.asarray(entry["factors"], np.float32), np.asarray(entry["bias"], np.float32),
               f"fitted:{entry['model']}")
    elif z_dim == 16 and pipeline.model_id.startswith("Wan-AI/"):
        out = (np.asarray(WAN21_FACTORS, np.float32), np.asarray(WAN21_BIAS, np.float32), "comfyui:Wan21")
    else:
        out = _fit_random(pipeline)
    pipeline._probe_projection = out
    return out


def _fit_random(pipeline: Any, count: int = 4) -> tuple[np.ndarray, np.ndarray, str]:
    """Fit on latents drawn N(0, 1) (seeded) at a small size, decoded by the model's VAE."""
    import torch

    vae = pipeline.diffusers.vae
    z = int(vae.config.z_dim)
    generator = torch.Generator("cpu").manual_seed(0)
    lats, frames = [], []
    for _ in range(count):
        lat = torch.randn((1, z, 3, 8, 8), generator=generator)
        lats.append(lat.numpy())
        frames.append(pipeline.decode(lat))
    factors, bias = fit(lats, frames, int(pipeline.diffusers.vae_scale_factor_temporal))
    return factors, bias, "fitted:random-latents"


def fit_builtin(model: str, seeds: int = 12) -> dict[str, Any]:
    """Fit the projection of a built-in model from its own generations.

    Args:
        model: A built-in model (``"toy"``, ``"tiny"``).
        seeds: Generations (native settings, the :data:`FIT_PROMPTS` in turn, seeds 0..seeds-1).

    Returns:
        The entry stored in ``projections.json``.

    Example:
        >>> fit_builtin("toy")["fitted_on"]  # doctest: +SKIP
        '12 generations at native settings'
    """
    import wanlab

    pipe = wanlab.load(model, progress=False)
    prompts = FIT_PROMPTS
    lats, frames = [], []
    for seed in range(seeds):
        video = pipe.generate(prompt=prompts[seed % len(prompts)], seed=seed, progress=False)
        lats.append(video.latents)
        frames.append(video.frames)
    factors, bias = fit(lats, frames, int(pipe.diffusers.vae_scale_factor_temporal))
    return {"model": model, "factors": [[round(float(v), 5) for v in row] for row in factors],
            "bias": [round(float(v), 5) for v in bias],
            "fitted_on": f"{seeds} generations at native settings"}


def main(argv: list[str]) -> None:
    """``python -m wanlab.probes.projection MODEL...``: refit and store the built-ins' projections.

    Args:
        argv: Model names (default: toy and tiny).

    Example:
        >>> main(["toy"])  # doctest: +SKIP
    """
    import wanlab

    from ..fsutil import write_json

    data = stored()
    for model in argv or ["toy", "tiny"]:
        data[wanlab.load(model, progress=False).fingerprint] = fit_builtin(model)
    write_json(STORED, data)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
