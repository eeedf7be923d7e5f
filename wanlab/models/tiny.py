"""The built-in ``tiny`` model: a real diffusers ``WanPipeline`` with seeded random weights, built offline.

Holds its component configs, the embedded tokenizer corpus and :func:`build`.
"""
from __future__ import annotations

import json
import math
from typing import Any

SEED = 20250225

#: Small enough to run 81 frames at 128x128 in about a second on 2 CPU cores.
TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
    out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", rope_max_seq_len=1024,
)
VAE_CONFIG: dict[str, Any] = dict(
    base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
    temperal_downsample=[False, True, True],
)
TEXT_ENCODER_CONFIG: dict[str, Any] = dict(
    d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
    relative_attention_max_distance=32, dropout_rate=0.0, feed_forward_proj="gated-gelu",
)
#: The scheduler as configured in the Wan 2.1 Diffusers repositories; flow_shift is set per call.
SCHEDULER_CONFIG: dict[str, Any] = dict(
    prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0,
)
VOCAB_SIZE = 400
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5

#: Embedded corpus for the tokenizer: the vocabulary of typical video prompts.
CORPUS = """
a red fox running through fresh snow in a quiet forest at dawn
a cat walking on a wooden fence under the warm evening sun
an astronaut riding a horse on the moon, cinematic lighting
waves crashing against black rocks on a stormy coast
a drone shot flying over green mountains and a winding river
a city street at night with neon lights and rain reflections
a small boat sailing across a calm blue lake with clouds
a dog jumping into a swimming pool in slow motion
a blue square moving right quickly on a dark background
a green circle moving left slowly across the frame
a yellow triangle moving up, a white circle moving down
a camera panning across a field of sunflowers in summer wind
close-up of a flower blooming, time lapse, soft focus
a panda eating bamboo in a misty bamboo forest
a person walking through a busy market, handheld camera
fireworks exploding over a harbor at midnight
a train passing through a snowy valley, aerial view
bright colors, dull colors, overexposed, static, blurred details, subtitles, style, artwork
painting, picture, still, overall gray, worst quality, low quality, JPEG compression residue
ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured
misshapen limbs, fused fingers, still picture, messy background, three legs, many people
in the background, walking backwards, the quick brown fox jumps over the lazy dog
"""


def _train_tokenizer():
    """Train a Unigram vocabulary on :data:`CORPUS` and wrap it as transformers' ``T5Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIALS), unk_token="<unk>",
        shrinking_factor=0.75, max_piece_length=12, n_sub_iterations=2, show_progress=False,
    )
    lines = [line for line in CORPUS.strip().splitlines() if line]
    tok.train_from_iterator(lines, trainer=trainer)
    trained = [piece for piece, _ in json.loads(tok.to_str())["model"]["vocab"] if piece not in SPECIALS]
    # The trainer's piece set is stable, but its order and the last digits of tied scores vary from
    # run to run. Scoring each piece by its log frequency in the corpus, in a canonical order, gives
    # the same ids, and so the same weights, on every machine.
    text = "".join("\u2581" + line.replace(" ", "\u2581") for line in lines)
    counts = {piece: max(text.count(piece), 1) for piece in trained}
    total = sum(counts.values())
    pieces = sorted(((p, math.log(c / total)) for p, c in counts.items()), key=lambda ps: (-ps[1], ps[0]))
    specials = [(piece, 0.0) for piece in SPECIALS]
    return T5Tokenizer(vocab=specials + pieces, extra_ids=0)


def build():
    """Build the tiny ``WanPipeline`` from fixed seeds (about 0.1 s plus tokenizer training).

    Every component is the class the 14B model uses (UMT5 text encoder, T5 tokenizer,
    ``WanTransformer3DModel``, ``AutoencoderKLWan``, UniPC flow scheduler), only small. The
    tokenizer is a Unigram vocabulary trained with the ``tokenizers`` library on :data:`CORPUS`, so
    nothing is downloaded. Fixed seeds give identical weights on every machine (their sha256 is
    :data:`wanlab.models.registry.TINY_FINGERPRINT`); the global torch RNG is left as it was.

    Returns:
        A diffusers ``WanPipeline`` on the CPU in float32, in eval mode without gradients.

    Example:
        >>> pipe = build()  # doctest: +SKIP
        >>> pipe.transformer.config.num_layers  # doctest: +SKIP
        2
    """
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _train_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER_CONFIG))
        torch.manual_seed(SEED + 1)
        transformer = WanTransformer3DModel(**TRANSFORMER_CONFIG)
        torch.manual_seed(SEED + 2)
        vae = AutoencoderKLWan(**VAE_CONFIG)
    scheduler = UniPCMultistepScheduler(**SCHEDULER_CONFIG)
    for module in (text_encoder, transformer, vae):
        module.eval().requires_grad_(False)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
                       scheduler=scheduler)
