"""The toy model's video autoencoder: diffusers' ``AutoencoderKLWan``, the helpers its training needs.

Wan's VAE is causal in time: latent frame 0 encodes video frame 0 alone, latent frame k (k >= 1)
encodes frames 2k-1 and 2k (at 2x temporal compression), and the decoder turns latent 0 back into
one frame and every later latent into two. :func:`init_frame_aligned` starts training from weights
in which every latent frame is the same per-image code (latent k = the code of frame 2k, exactly
as latent 0 is the code of frame 0), so single-image training carries over to clips unchanged and
the first latent frame means what the others mean; :func:`decode_unclamped` and
:func:`encode_mean` are the stock forward passes without the final clamp and the posterior sampling.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models import internals


def clips_tensor(clips: Sequence[Any], frame: Sequence[int] | None = None):
    """(B, 3, T, H, W) float in [-1, 1] and shape coverage (B, 1, T, H, W) of ``data.Clip`` objects.

    ``frame``: one frame index per clip (T = 1), for single-image training.
    """
    import torch

    frames = np.stack([c.frames for c in clips])  # B T H W 3
    cov = np.stack([c.coverage for c in clips])
    if frame is not None:
        frames = frames[np.arange(len(clips)), list(frame)][:, None]
        cov = cov[np.arange(len(clips)), list(frame)][:, None]
    x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    return x.contiguous(), torch.from_numpy(cov)[:, None].float().contiguous()


def latent_coverage(coverage: Any, spatial: int, temporal: int):
    """Where the shape is, at latent resolution: (B, 1, T, H, W) pixel coverage -> (B, 1, T', H', W') in [0, 1].

    Latent frame 0 covers video frame 0, latent k the ``temporal`` frames that end at frame
    ``temporal * k``; each latent cell takes the largest coverage of its pixels, widened by one
    cell on every side (the cells next to an edge carry the edge too).
    """
    import torch
    import torch.nn.functional as F

    first, rest = coverage[:, :, :1], coverage[:, :, 1:]
    if rest.shape[2]:
        b, c, t, h, w = rest.shape
        rest = rest.reshape(b, c, t // temporal, temporal, h, w).amax(3)
    per_frame = torch.cat([first, rest], 2)
    cells = F.max_pool3d(per_frame, (1, spatial, spatial))
    return F.max_pool3d(cells, (1, 3, 3), stride=1, padding=(0, 1, 1))


def decode_unclamped(vae: Any, z: Any):
    """``AutoencoderKLWan._decode`` without its final clamp (so saturated pixels keep a gradient)."""
    return internals.vae_decode_unclamped(vae, z)


def encode_mean(vae: Any, x: Any):
    """Encoder mean (the posterior's mode), shape (B, z_dim, T', H', W')."""
    return internals.vae_encode(vae, x)[:, : vae.config.z_dim]


def reconstruction_loss(y: Any, x: Any, coverage: Any, fg_weight: float, l1: float, edge: float = 0.0):
    """Weighted L2 + ``l1`` x L1 over pixels, + ``edge`` x L1 of the error's spatial differences.

    Shape pixels weigh ``1 + fg_weight`` (the shape is small); the edge term asks for the image's
    gradients, i.e. sharp outlines, which decide the shape class.
    """
    w = 1.0 + fg_weight * coverage
    err = y - x
    loss = (w * (err ** 2 + l1 * err.abs())).sum() / (w.sum() * x.shape[1])
    if edge:
        loss = loss + edge * ((err[..., 1:, :] - err[..., :-1, :]).abs().mean()
                              + (err[..., :, 1:] - err[..., :, :-1]).abs().mean())
    return loss


def init_frame_aligned(vae: Any) -> None:
    """Set the temporal taps of a fresh ``AutoencoderKLWan`` so that every latent frame is a per-image code.

    Causal 3x3x3 convolutions see only the current frame (past taps zero: what they see on a
    clip's first frame, where the past is zero padding); the encoder's temporal downsampling keeps
    the newest frame of each window (latent k = code of frame 2k); the decoder's temporal upsampling
    turns latent k into two copies (frames 2k-1 and 2k). Spatial weights keep their random init;
    training on clips then learns motion from there.

    >>> from diffusers import AutoencoderKLWan
    >>> vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True])
    >>> init_frame_aligned(vae)
    >>> float(vae.decoder.conv_in.weight[:, :, :2].abs().sum())
    0.0
    """
    import torch

    time_convs = internals.vae_time_convs(vae)
    with torch.no_grad():
        for conv in time_convs:
            conv.weight.zero_()
            conv.bias.zero_()
            eye = torch.eye(conv.in_channels)
            # downsample3d: window (f_2k-2, f_2k-1, f_2k) -> f_2k; upsample3d: z_k -> (z_k, z_k)
            for half in range(conv.out_channels // conv.in_channels):
                conv.weight[half * conv.in_channels:(half + 1) * conv.in_channels, :, 2, 0, 0] = eye
        time_ids = {id(conv) for conv in time_convs}
        for module in internals.vae_causal_convs(vae):
            if module.kernel_size[0] > 1 and id(module) not in time_ids:
                module.weight[:, :, :-1] = 0.0


class single_frame_convs:
    """Context manager: causal 3D convolutions given one frame and no past compute only their current tap.

    On a single image the causal padding feeds the two past taps zeros, so ``conv3d`` spends two
    thirds of its work on them; this computes the same result with ``conv2d`` on the current tap
    (equal up to float summation order), for single-image training steps.
    """

    def __init__(self, vae: Any) -> None:
        self.convs = [m for m in internals.vae_causal_convs(vae) if m.kernel_size[0] > 1 and m.stride[0] == 1]

    def __enter__(self) -> single_frame_convs:
        for conv in self.convs:
            conv.forward = _single_frame_forward(conv)
        return self

    def __exit__(self, *exc: Any) -> None:
        for conv in self.convs:
            del conv.forward


def _single_frame_forward(conv: Any):
    import torch.nn.functional as F

    stock = type(conv).forward

    def forward(x, cache_x=None):
        if x.shape[2] != 1 or cache_x is not None:
            return stock(conv, x, cache_x)
        pad_w, _, pad_h = internals.causal_conv_padding(conv)[:3]
        out = F.conv2d(x[:, :, 0], conv.weight[:, :, -1], conv.bias, stride=conv.stride[1:], padding=(pad_h, pad_w))
        return out[:, :, None]

    return forward
