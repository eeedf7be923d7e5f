"""Full-size Wan 2.1 transformers (1.3B, 14B) with random bf16 weights: per-step latency of wanlab's
generate against a direct diffusers call, and each cache setting's speedup and fidelity.

Run on a CUDA machine (no weights needed: the architectures are built from their configurations
and filled with seeded random weights):

    python benchmarks/bench_gpu.py --arch 1.3B --steps 10 --repeats 3
    python benchmarks/bench_gpu.py --arch 14B --steps 4 --repeats 2 --settings none
    python benchmarks/bench_gpu.py --arch smoke --device cpu --size 64x64 --frames 5 --steps 3   # CPU smoke run

For each architecture: (1) per-step latency, interleaved best of --repeats: wanlab ``generate`` (its
recorded denoising time, which waits for the GPU) against ``WanPipeline.__call__`` given the same
prompt embeddings and seed with ``output_type="latent"`` (nothing else timed), whether the two give
identical latents, and peak GPU memory; (2) ``wanlab.accel.study`` of the cache presets on the same
request (speedup, PSNR, SSIM, rel. L2 of latents, calls skipped). The text encoder is a one-layer
UMT5 of the real width (4096) and the VAE the tiny one unless ``--full-vae``: neither is what is
measured, and the real UMT5-XXL alone would be 11 GB of random weights. The card, torch and
diffusers versions are printed with the numbers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time

#: The Wan 2.1 T2V transformer configurations (Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers), and a
#: tiny one with the same structure for a smoke run on any machine.
ARCHS = {
    "1.3B": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096),
    "14B": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40, text_dim=4096),
    "smoke": dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=32),
}
COMMON = dict(patch_size=(1, 2, 2), in_channels=16, out_channels=16, freq_dim=256, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
SEED = 20251125
PROMPT = "a red fox running through fresh snow in a quiet forest at dawn"


def build(arch: str, device: str, full_vae: bool):
    """A wanlab Pipeline over a WanPipeline with the ``arch`` transformer (random bf16 weights, seeded)."""
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from wanlab.models import internals, tiny
    from wanlab.models.identity import ModelIdentity, generation_settings, scheduler_settings
    from wanlab.pipeline import Pipeline

    config = {**COMMON, **ARCHS[arch]}
    base = tiny.build()  # tokenizer, scheduler and the tiny VAE
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    saved = torch.get_default_dtype()
    try:
        with torch.device(device):
            torch.manual_seed(SEED)
            torch.set_default_dtype(dtype)  # built in bf16 directly: 14B in fp32 first would need 56 GB
            transformer = WanTransformer3DModel(**config)
            torch.set_default_dtype(torch.float32)
            torch.manual_seed(SEED + 1)
            text_encoder = UMT5EncoderModel(UMT5Config(
                vocab_size=len(base.tokenizer), d_model=config["text_dim"], d_kv=64, d_ff=256, num_layers=1,
                num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                dropout_rate=0.0, feed_forward_proj="gated-gelu"))
            torch.manual_seed(SEED + 2)
            vae = AutoencoderKLWan() if full_vae else AutoencoderKLWan(**tiny.VAE_CONFIG)
    finally:
        torch.set_default_dtype(saved)
    # as from_pretrained(dtype=bfloat16) does: the modules diffusers keeps in float32 stay float32
    keep = internals.keep_in_fp32_modules(transformer)
    for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
        if keep & set(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    for module in (transformer, text_encoder, vae):
        module.eval().requires_grad_(False)
    pipe = WanPipeline(tokenizer=base.tokenizer, text_encoder=text_encoder.to(device), transformer=transformer,
                       vae=vae.to(device), scheduler=base.scheduler)
    pipe.set_progress_bar_config(disable=True)
    params = sum(p.numel() for p in transformer.parameters())
    settings = generation_settings(dtype=str(dtype).replace("torch.", ""), max_sequence_length=512,
                                   scheduler=scheduler_settings(type(pipe.scheduler), pipe.scheduler.config))
    # seeded random weights: the configuration and seed identify them (hashing 28 GB would take minutes)
    fingerprint = hashlib.sha256(json.dumps({"arch": config, "seed": SEED, "full_vae": full_vae},
                                            sort_keys=True, default=str).encode()).hexdigest()
    identity = ModelIdentity(f"wan2.1-{arch}-random", "random", fingerprint, settings)
    wanlab_pipe = Pipeline(pipe, identity, device=device)
    return wanlab_pipe, params


def direct_step_time(pipe, p) -> tuple[float, object]:
    """Seconds per denoising step of ``WanPipeline.__call__`` with the embeddings wanlab uses, and its latents."""
    import torch

    from wanlab.pipeline import synchronize

    d = pipe.diffusers
    prompt_embeds = pipe.encode(p.prompt)
    negative = pipe.encode(p.negative_prompt) if p.guidance_scale > 1.0 else None
    d.scheduler = type(d.scheduler).from_config(d.scheduler.config, flow_shift=p.flow_shift)
    generator = torch.Generator("cpu").manual_seed(p.seed)
    synchronize(pipe.device)
    start = time.perf_counter()
    with torch.inference_mode():
        latents = d(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative, height=p.height, width=p.width,
                    num_frames=p.num_frames, num_inference_steps=p.steps, guidance_scale=p.guidance_scale,
                    generator=generator, output_type="latent", max_sequence_length=pipe.max_sequence_length).frames
    synchronize(pipe.device)
    return (time.perf_counter() - start) / p.steps, latents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="1.3B", help="comma-separated: 1.3B, 14B, smoke")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="832x480", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", default="fbc,fbc-fast,mag,taylorseer,pab,seacache",
                        help="cache presets for the study, comma-separated; 'none' skips the study")
    parser.add_argument("--full-vae", action="store_true", help="the real Wan VAE (random) instead of the tiny one")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import diffusers
    import numpy as np
    import torch

    from wanlab import Params
    from wanlab.accel import study, summarize

    width, height = (int(x) for x in args.size.lower().split("x"))
    cuda = args.device.startswith("cuda")
    card = torch.cuda.get_device_name(args.device) if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    print(f"device: {card}; torch {torch.__version__}, diffusers {diffusers.__version__}")
    print(f"request: {width}x{height}, {args.frames} frames, {args.steps} steps, guidance 5.0 (2 transformer calls "
          f"per step), best of {args.repeats} interleaved\n")
    for arch in args.arch.split(","):
        t0 = time.perf_counter()
        pipe, n_params = build(arch, args.device, args.full_vae)
        print(f"== Wan 2.1 {arch} architecture: {n_params / 1e9:.2f} B transformer parameters, "
              f"{pipe.identity.settings['dtype']}, built in {time.perf_counter() - t0:.0f} s")
        p = Params(prompt=PROMPT, width=width, height=height, num_frames=args.frames, steps=args.steps,
                   guidance_scale=5.0, flow_shift=5.0, seed=1)
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        pipe.generate(p, progress=False)  # warm-up: kernels chosen, allocator primed
        direct_step_time(pipe, p)
        ours, theirs, same = [], [], True
        for r in range(args.repeats):
            order = ("wanlab", "direct") if r % 2 == 0 else ("direct", "wanlab")
            for who in order:
                if who == "wanlab":
                    video = pipe.generate(p, progress=False)
                    ours.append(video.timings["denoise"] / p.steps)
                else:
                    step, latents = direct_step_time(pipe, p)
                    theirs.append(step)
            same = same and np.array_equal(video.latents, latents.float().cpu().numpy())
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated(args.device) / 2**30:.1f} GiB" if cuda else ""
        print(f"per denoising step: wanlab {min(ours) * 1e3:.1f} ms, direct diffusers {min(theirs) * 1e3:.1f} ms, "
              f"ratio {min(ours) / min(theirs):.3f} (goal <= 1.0; medians {np.median(ours) * 1e3:.1f} / "
              f"{np.median(theirs) * 1e3:.1f} ms); identical latents: {'yes' if same else 'NO'}{peak}")
        if args.settings != "none":
            df = study(pipe, p, args.settings.split(","), repeats=args.repeats, timing="min")
            table = summarize(df)[["setting", "speedup", "speedup_min", "psnr", "ssim", "rel_l2", "skipped", "pareto"]]
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print()
        del pipe
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
