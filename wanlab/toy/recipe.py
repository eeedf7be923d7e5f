"""The toy checkpoint's training recipe: model configs, stage settings, seeds and thread count.

``RECIPE`` ("full") is the second-generation recipe; ``WARM_RECIPE`` ("warm") restarts the
first generation's transformer on that recipe's VAE; ``TEST_RECIPE`` ("test") runs a few steps per
stage for tests of the command, its determinism and its resuming. A recipe is plain JSON data; it
is written into the checkpoint's ``recipe.json`` and hashed per stage so a work folder never mixes
stages of two recipes.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from . import data

SEED = 20251125
#: Training stages, in order.
STAGES = ("tokenizer", "vae", "encode", "decoder", "transformer")

VAE_CONFIG: dict[str, Any] = dict(
    base_dim=16, z_dim=8, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
    patch_size=2, in_channels=12, out_channels=12, scale_factor_spatial=4, scale_factor_temporal=2,
)
TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 4, 4), num_attention_heads=4, attention_head_dim=32, in_channels=8, out_channels=8,
    text_dim=32, freq_dim=256, ffn_dim=256, num_layers=4, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
    relative_attention_max_distance=16, dropout_rate=0.0, feed_forward_proj="gated-gelu",
)
SCHEDULER_CONFIG: dict[str, Any] = dict(
    prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0,
)

#: The recipe of the shipped checkpoint (about an hour of one CPU thread on an idle core).
RECIPE: dict[str, Any] = {
    "name": "full",
    "seed": SEED,
    "threads": 1,
    "width": data.WIDTH, "height": data.HEIGHT, "num_frames": data.NUM_FRAMES,
    "vae": {"config": VAE_CONFIG, "temporal_init": "frame_aligned", "lr": 1e-3, "warmup": 50, "min_lr_ratio": 0.1,
            "image_steps": 2500, "image_batch": 16, "video_steps": 0, "video_batch": 4, "fg_weight": 8.0,
            "l1": 0.2, "latent_l2": 1e-4, "grad_clip": 1.0, "log_every": 50, "ckpt_every": 250},
    "encode": {"clips": 3000, "batch": 8, "ckpt_every": 600},
    "decoder": {"steps": 400, "batch": 4, "lr": 3e-4, "warmup": 20, "min_lr_ratio": 0.1, "fg_weight": 8.0,
                "l1": 0.2, "latent_noise": 0.05, "grad_clip": 1.0, "log_every": 25, "ckpt_every": 50},
    "transformer": {"config": TRANSFORMER_CONFIG, "text_encoder": TEXT_ENCODER_CONFIG, "lr": 8e-4,
                    "warmup": 200, "min_lr_ratio": 0.05, "steps": 3600, "batch": 32, "ema": 0.999,
                    "caption_dropout": 0.1, "shift": 3.0, "max_sequence_length": 16, "weight_decay": 0.01,
                    "fg_weight": 4.0, "grad_clip": 1.0, "log_every": 50, "ckpt_every": 200},
    "scheduler": SCHEDULER_CONFIG,
}

#: A few steps per stage: for tests of the command and of its determinism (seconds, not quality).
TEST_RECIPE: dict[str, Any] = copy.deepcopy(RECIPE)
TEST_RECIPE["name"] = "test"
TEST_RECIPE["vae"].update(image_steps=3, image_batch=2, video_steps=2, video_batch=1, warmup=2,
                          log_every=1, ckpt_every=2)
TEST_RECIPE["encode"].update(clips=6, batch=3, ckpt_every=3)
TEST_RECIPE["transformer"].update(steps=4, batch=4, warmup=2, log_every=1, ckpt_every=2)
TEST_RECIPE["decoder"].update(steps=2, batch=1, warmup=1, log_every=1, ckpt_every=1)

#: The first-generation checkpoint (shipped since commit 3f4b74e) whose transformer and text encoder the
#: warm recipes start from; the sha256 of each weights file pins it, so a resumed or repeated run
#: cannot start from another checkpoint that happens to sit in ``wanlab/models/toy``.
FIRST_GENERATION: dict[str, Any] = {
    "folder": "builtin:toy",
    "sha256": {
        "transformer/diffusion_pytorch_model.safetensors":
            "8a8766b40c4dda5abd6651ea531d27779a0a433569cd5bf06e2c29d7068c8582",
        "text_encoder/model.safetensors": "c8a2ccc405f72a952311ce87329b9b2245bb9ad14a1d742b378aaba4650deda5",
    },
}

#: Third try (issue 27): the second-generation VAE stages, then a warm restart of the first
#: generation's transformer and text encoder on that VAE's latents (the first generation's own
#: finetune stage restarted from its EMA weights at lr 3e-4; a new latent space asks for more steps).
WARM_RECIPE: dict[str, Any] = copy.deepcopy(RECIPE)
WARM_RECIPE["name"] = "warm"
WARM_RECIPE["transformer"].update(init=FIRST_GENERATION, lr=3e-4, warmup=100, steps=3000, ema=0.998)
#: The same warm restart at the first generation's from-scratch learning rate (run beside ``warm``).
WARM_HIGH_LR_RECIPE: dict[str, Any] = copy.deepcopy(WARM_RECIPE)
WARM_HIGH_LR_RECIPE["name"] = "warm-high-lr"
WARM_HIGH_LR_RECIPE["transformer"].update(lr=8e-4, warmup=200)
#: ``warm`` for tests: a few steps per stage.
TEST_WARM_RECIPE: dict[str, Any] = copy.deepcopy(TEST_RECIPE)
TEST_WARM_RECIPE["name"] = "test-warm"
TEST_WARM_RECIPE["transformer"].update(init=FIRST_GENERATION)

RECIPES: dict[str, dict[str, Any]] = {"full": RECIPE, "test": TEST_RECIPE, "warm": WARM_RECIPE,
                                      "warm-high-lr": WARM_HIGH_LR_RECIPE, "test-warm": TEST_WARM_RECIPE}


def recipe_hash(recipe: dict[str, Any]) -> str:
    """Short sha256 of a recipe's canonical JSON (keys sorted).

    Args:
        recipe: A recipe (plain JSON data), e.g. :data:`RECIPE`.

    Returns:
        The first 16 hex digits of the sha256 of ``json.dumps(recipe, sort_keys=True)``.

    Example:
        >>> recipe_hash({"b": 1, "a": 2}) == recipe_hash({"a": 2, "b": 1})
        True
        >>> len(recipe_hash(RECIPE))
        16
    """
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def stage_hash(recipe: dict[str, Any], stage: str) -> str:
    """Hash of the recipe parts a stage depends on: the global settings, its own section and earlier ones.

    Args:
        recipe: A recipe, e.g. :data:`RECIPE`.
        stage: One of :data:`STAGES`.

    Returns:
        :func:`recipe_hash` of those parts, so a later stage's settings never change an earlier stage's hash.

    Raises:
        ValueError: ``stage`` is not one of :data:`STAGES`.

    Example:
        >>> stage_hash(RECIPE, "vae") == stage_hash(WARM_RECIPE, "vae")
        True
        >>> stage_hash(RECIPE, "transformer") == stage_hash(WARM_RECIPE, "transformer")
        False
    """
    keys = ["seed", "threads", "width", "height", "num_frames"]
    keys += [s for s in STAGES[: STAGES.index(stage) + 1] if s in recipe]
    return recipe_hash({k: recipe[k] for k in keys})
