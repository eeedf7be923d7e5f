"""Train the ``toy`` Wan checkpoint: ``python -m wanlab.toy.train --out DIR``.

All stages run in order with fixed seeds and pinned threads, each resumable from its own
checkpoint in a work folder (re-run the same command after an interruption):

1. ``tokenizer``: a Unigram vocabulary in which every caption word is one token (transformers'
   ``T5Tokenizer``, built offline).
2. ``vae``: diffusers' ``AutoencoderKLWan`` (patchified input, 4x spatial and 2x temporal
   compression, 8 latent channels), first on single frames, then on full clips; the loss weights
   shape pixels more than background and is taken before the decoder's final clamp.
3. ``encode``: encoder means of a fixed set of training clips; per-channel statistics go to the
   VAE config (``latents_mean`` / ``latents_std``) as Wan does.
4. ``transformer``: ``WanTransformer3DModel`` and the ``UMT5EncoderModel`` text encoder trained
   jointly with flow matching as UniPC's ``flow_prediction`` expects (x_t = (1-s) x0 + s eps,
   target eps - x0, timestep 1000 s, s shifted like the sampler), captions dropped to "" 10 % of
   the time (classifier-free guidance), EMA weights saved.
5. ``decoder``: the VAE decoder refined on full clips with the encoder frozen (so the latents the
   transformer learnt stay valid), with a little noise on the latents for robustness.
6. ``finetune``: a second, shorter cosine cycle of stage 4 from its EMA weights (a warm restart).

The result is a stock diffusers pipeline folder (``WanPipeline.save_pretrained``, safetensors)
plus ``training_log.jsonl``, ``recipe.json`` and ``SHA256SUMS``. Randomness is a pure function of
(seed, stage, step), so a resumed run gives the same weights as an uninterrupted one; the same
recipe, thread count, machine and versions give bit-identical weights.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import data

SEED = 20251125

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

#: The recipe of the shipped checkpoint (sized for about an hour on one CPU thread).
RECIPE: dict[str, Any] = {
    "name": "full",
    "seed": SEED,
    "threads": 1,
    "width": data.WIDTH, "height": data.HEIGHT, "num_frames": data.NUM_FRAMES,
    "vae": {"config": VAE_CONFIG, "lr": 3e-4, "warmup": 50, "min_lr_ratio": 0.1, "image_steps": 400,
            "image_batch": 16, "video_steps": 450, "video_batch": 4, "fg_weight": 8.0, "l1": 0.2,
            "latent_l2": 1e-4, "grad_clip": 1.0, "log_every": 25, "ckpt_every": 100},
    "encode": {"clips": 1800, "batch": 8, "ckpt_every": 400},
    "transformer": {"config": TRANSFORMER_CONFIG, "text_encoder": TEXT_ENCODER_CONFIG, "lr": 8e-4,
                    "warmup": 200, "min_lr_ratio": 0.05, "steps": 3000, "batch": 32, "ema": 0.998,
                    "caption_dropout": 0.1, "shift": 3.0, "max_sequence_length": 16, "weight_decay": 0.01,
                    "grad_clip": 1.0, "log_every": 50, "ckpt_every": 200},
    "decoder": {"steps": 300, "batch": 4, "lr": 2e-4, "warmup": 20, "min_lr_ratio": 0.1, "fg_weight": 8.0,
                "l1": 0.2, "latent_noise": 0.05, "grad_clip": 1.0, "log_every": 25, "ckpt_every": 50},
    "finetune": {"steps": 1400, "lr": 3e-4, "warmup": 50, "min_lr_ratio": 0.05},
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
TEST_RECIPE["finetune"].update(steps=2, warmup=1)

RECIPES = {"full": RECIPE, "test": TEST_RECIPE}
STAGES = ("tokenizer", "vae", "encode", "transformer", "decoder", "finetune")

#: Vocabulary: special tokens (T5 ids 0, 1, 2), every caption word as one piece, then single
#: characters so that any other text still tokenizes (to pieces the model never saw).
SPECIALS = ("<pad>", "</s>", "<unk>")
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'-!?"


# ------------------------------------------------------------------------------------------ utils
class StopTraining(Exception):
    """Raised when ``stop_after`` asks to stop (tests of resuming)."""


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _rng_int(*key: int) -> int:
    return int(np.random.default_rng([int(k) for k in key]).integers(2**62))


def _generator(*key: int):
    import torch

    return torch.Generator().manual_seed(_rng_int(*key))


def _lr(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _clips_tensor(clips: list[data.Clip], frame: list[int] | None = None):
    """(B, 3, T, H, W) float in [-1, 1] and coverage (B, 1, T, H, W); ``frame``: one frame per clip."""
    import torch

    frames = np.stack([c.frames for c in clips])  # B T H W 3
    cov = np.stack([c.coverage for c in clips])
    if frame is not None:
        frames = frames[np.arange(len(clips)), frame][:, None]
        cov = cov[np.arange(len(clips)), frame][:, None]
    x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    return x.contiguous(), torch.from_numpy(cov)[:, None].float().contiguous()


def decode_unclamped(vae: Any, z: Any):
    """``AutoencoderKLWan._decode`` without its final clamp (so saturated pixels keep a gradient)."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae.clear_cache()
    x = vae.post_quant_conv(z)
    out = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        out.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                               first_chunk=(i == 0)))
    vae.clear_cache()
    out = torch.cat(out, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out


def encode_mean(vae: Any, x: Any):
    """Encoder mean (the posterior's mode), shape (B, z_dim, T', H', W')."""
    h = vae._encode(x)
    return h[:, : vae.config.z_dim]


class Logger:
    def __init__(self, stage: str, lines: list[dict[str, Any]], progress: bool, total: int) -> None:
        self.stage, self.lines, self.progress, self.total = stage, lines, progress, total

    def __call__(self, step: int, elapsed: float, **values: Any) -> None:
        line = {"stage": self.stage, "step": step, "elapsed_s": round(elapsed, 2),
                **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}}
        self.lines.append(line)
        if self.progress:
            rate = elapsed / max(step, 1)
            eta = rate * (self.total - step)
            vals = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            print(f"[{self.stage}] {step}/{self.total} {vals} ({elapsed:.0f} s, eta {eta:.0f} s)", flush=True)


# -------------------------------------------------------------------------------------- tokenizer
def build_tokenizer():
    """transformers' ``T5Tokenizer`` over a closed vocabulary: every caption word is one token.

    Scores are canonical (words -1 each, characters -10 each), so ids and segmentation are the
    same on every machine; a caption word always wins over spelling it in characters.
    """
    from transformers import T5Tokenizer

    vocab = [(p, 0.0) for p in SPECIALS]
    vocab += [("\u2581" + w, -1.0) for w in data.WORDS]
    vocab += [("\u2581", -10.0)] + [(c, -10.0) for c in CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tokenize(tokenizer: Any, texts: list[str], max_length: int):
    """Token ids and mask exactly as ``WanPipeline._get_t5_prompt_embeds`` makes them."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    out = tokenizer([prompt_clean(t) for t in texts], padding="max_length", max_length=max_length,
                    truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    return out.input_ids, out.attention_mask


def text_embeddings(text_encoder: Any, ids: Any, mask: Any):
    """``WanPipeline``'s prompt embeddings: encoder states, zeros after each prompt's length."""
    states = text_encoder(ids, mask).last_hidden_state
    return states * mask[..., None].to(states.dtype)


# -------------------------------------------------------------------------------------- the stages
class Trainer:
    def __init__(self, out: Path, recipe: dict[str, Any], work: Path | None = None, progress: bool = True,
                 stop_after: Callable[[str, int], bool] | None = None) -> None:
        self.out = Path(out)
        self.recipe = recipe
        self.seed = int(recipe["seed"])
        self.work = Path(work) if work else (Path(tempfile.gettempdir()) / "wanlab-toy-work"
                                             / f"{recipe['name']}-{recipe['seed']}")
        self.progress = progress
        self.stop_after = stop_after  # tests: simulate an interruption
        self.work.mkdir(parents=True, exist_ok=True)

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, flush=True)

    # --- 1. tokenizer
    def stage_tokenizer(self) -> dict[str, Any]:
        folder = self.work / "tokenizer"
        t0 = time.perf_counter()
        tok = build_tokenizer()
        tok.save_pretrained(str(folder))
        words = " ".join(data.WORDS)
        ids = tok(words).input_ids
        assert len(ids) == len(data.WORDS) + 1, "every caption word must be one token"
        return {"stage": "tokenizer", "vocab_size": len(tok), "seconds": time.perf_counter() - t0}

    # --- 2. VAE
    def stage_vae(self) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKLWan

        r = self.recipe["vae"]
        ckpt_path = self.work / "vae.pt"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            vae = AutoencoderKLWan(**r["config"])
        opt = torch.optim.AdamW(vae.parameters(), lr=r["lr"], betas=(0.9, 0.99), weight_decay=0.0)
        state = {"step": 0, "log": [], "elapsed": 0.0}
        if ckpt_path.exists():
            ck = _load(ckpt_path)
            vae.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
            self.say(f"[vae] resuming at step {state['step']}")
        total = r["image_steps"] + r["video_steps"]
        log = Logger("vae", state["log"], self.progress, total)
        vae.train()
        t_start = time.perf_counter() - state["elapsed"]
        running: list[float] = []
        for step in range(state["step"], total):
            image = step < r["image_steps"]
            batch = r["image_batch"] if image else r["video_batch"]
            clips = [data.make_clip(data.clip_seed(self.seed, 1, step * 1000 + b), width=self.recipe["width"],
                                    height=self.recipe["height"], num_frames=self.recipe["num_frames"])
                     for b in range(batch)]
            frame = None
            if image:
                pick = np.random.default_rng([self.seed, 1, step, 7])
                frame = [int(pick.integers(self.recipe["num_frames"])) for _ in clips]
            x, cov = _clips_tensor(clips, frame)
            for g in opt.param_groups:
                g["lr"] = _lr(step, total, r["lr"], r["warmup"], r["min_lr_ratio"])
            mu = encode_mean(vae, x)
            y = decode_unclamped(vae, mu)
            w = 1.0 + r["fg_weight"] * cov
            err = y - x
            loss = ((w * (err ** 2 + r["l1"] * err.abs())).sum() / (w.sum() * 3)
                    + r["latent_l2"] * mu.pow(2).mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), r["grad_clip"])
            opt.step()
            with torch.no_grad():
                mse = float(err.clamp(-2, 2).pow(2).mean())
            running.append(mse)
            done = step + 1
            if done % r["log_every"] == 0 or done == total:
                m = float(np.mean(running))
                psnr = 10 * math.log10(4.0 / max(m, 1e-12))
                log(done, time.perf_counter() - t_start, loss=float(loss.detach()), mse=m, psnr_db=psnr,
                    lr=opt.param_groups[0]["lr"], phase="image" if image else "video")
                running = []
            if done % r["ckpt_every"] == 0 or done == total:
                state.update(step=done, elapsed=time.perf_counter() - t_start)
                _save_atomic({"model": vae.state_dict(), "opt": opt.state_dict(), "state": state}, ckpt_path)
                if self.stop_after and self.stop_after("vae", done) and done < total:
                    raise StopTraining(f"stopped after {done} steps")
        vae.eval().requires_grad_(False)
        vae.save_pretrained(str(self.work / "vae"))
        return {"stage": "vae", "steps": total, "seconds": state["elapsed"],
                "params": sum(p.numel() for p in vae.parameters())}

    def _trained_vae(self) -> Any:
        """The stage-2 VAE from the work folder, realigned so it computes as it did in memory."""
        import torch
        from diffusers import AutoencoderKLWan

        from ..models.loading import realign

        vae = AutoencoderKLWan.from_pretrained(str(self.work / "vae"), dtype=torch.float32)
        realign(vae)
        return vae

    # --- 3. latent encoding
    def stage_encode(self) -> dict[str, Any]:
        import torch

        r = self.recipe["encode"]
        vae = self._trained_vae()
        vae.eval()
        path = self.work / "latents.pt"
        ck = _load(path) if path.exists() else {"latents": [], "captions": [], "elapsed": 0.0, "log": []}
        n = r["clips"]
        t_start = time.perf_counter() - ck["elapsed"]
        log = Logger("encode", ck["log"], self.progress, n)
        captions = data.TRAIN_CAPTIONS
        done = sum(len(x) for x in ck["latents"])
        since = 0
        while done < n:
            idx = list(range(done, min(n, done + r["batch"])))
            clips = [data.make_clip(data.clip_seed(self.seed, 2, i), captions[i % len(captions)],
                                    width=self.recipe["width"], height=self.recipe["height"],
                                    num_frames=self.recipe["num_frames"]) for i in idx]
            x, _ = _clips_tensor(clips)
            with torch.no_grad():
                mu = encode_mean(vae, x)
            ck["latents"].append(mu)
            ck["captions"] += [i % len(captions) for i in idx]
            done += len(idx)
            since += len(idx)
            if since >= r["ckpt_every"] or done == n:
                since = 0
                log(done, time.perf_counter() - t_start)
                ck["elapsed"] = time.perf_counter() - t_start
                _save_atomic(ck, path)
                if self.stop_after and self.stop_after("encode", done) and done < n:
                    raise StopTraining(f"stopped after {done} steps")
        lat = torch.cat(ck["latents"])
        mean = lat.mean(dim=(0, 2, 3, 4))
        std = lat.std(dim=(0, 2, 3, 4))
        stats = {"latents_mean": [float(v) for v in mean], "latents_std": [float(v) for v in std]}
        (self.work / "latent_stats.json").write_text(json.dumps(stats))
        return {"stage": "encode", "clips": n, "seconds": ck["elapsed"], **stats}

    # --- 4. transformer + text encoder
    def stage_finetune(self) -> dict[str, Any]:
        """6. A second cosine cycle of the transformer stage, from its EMA weights (a warm restart)."""
        return self.stage_transformer("finetune")

    def stage_transformer(self, section: str = "transformer") -> dict[str, Any]:
        import torch
        from diffusers import WanTransformer3DModel
        from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

        r = self.recipe["transformer"] if section == "transformer" else {**self.recipe["transformer"],
                                                                         **self.recipe[section]}
        stage_id = 4 if section == "transformer" else 6
        init = section != "transformer"
        tok = T5Tokenizer.from_pretrained(str(self.work / "tokenizer"))
        lat_ck = _load(self.work / "latents.pt")
        stats = json.loads((self.work / "latent_stats.json").read_text())
        mean = torch.tensor(stats["latents_mean"]).view(1, -1, 1, 1, 1)
        std = torch.tensor(stats["latents_std"]).view(1, -1, 1, 1, 1)
        latents = ((torch.cat(lat_ck["latents"]) - mean) / std).contiguous()
        cap_index = torch.tensor(lat_ck["captions"])
        texts = list(data.TRAIN_CAPTIONS) + [""]
        ids, mask = tokenize(tok, texts, r["max_sequence_length"])
        empty = len(texts) - 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 2)
            text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), **r["text_encoder"]))
            torch.manual_seed(self.seed + 3)
            transformer = WanTransformer3DModel(**r["config"])
        params = list(transformer.parameters()) + list(text_encoder.parameters())
        opt = torch.optim.AdamW(params, lr=r["lr"], betas=(0.9, 0.99), weight_decay=r["weight_decay"])
        if init:  # start from the transformer stage's EMA weights
            ck = _load(self.work / "transformer.pt")
            transformer.load_state_dict(ck["ema_transformer"])
            text_encoder.load_state_dict(ck["ema_text_encoder"])
        ema_tr, ema_te = copy.deepcopy(transformer).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
        path = self.work / f"{section}.pt"
        state = {"step": 0, "log": [], "elapsed": 0.0}
        if path.exists():
            ck = _load(path)
            transformer.load_state_dict(ck["transformer"])
            text_encoder.load_state_dict(ck["text_encoder"])
            ema_tr.load_state_dict(ck["ema_transformer"])
            ema_te.load_state_dict(ck["ema_text_encoder"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
            self.say(f"[{section}] resuming at step {state['step']}")
        transformer.train()
        text_encoder.train()
        total, batch, shift = r["steps"], r["batch"], r["shift"]
        log = Logger(section, state["log"], self.progress, total)
        t_start = time.perf_counter() - state["elapsed"]
        running: list[float] = []
        ema_pairs = list(zip(list(ema_tr.parameters()) + list(ema_te.parameters()), params))
        for step in range(state["step"], total):
            g = _generator(self.seed, stage_id, step)
            pick = torch.randint(len(latents), (batch,), generator=g)
            x0 = latents[pick]
            cap = cap_index[pick].clone()
            cap[torch.rand(batch, generator=g) < r["caption_dropout"]] = empty
            u = torch.rand(batch, generator=g)
            s = shift * u / (1 + (shift - 1) * u)
            eps = torch.randn(x0.shape, generator=g)
            sv = s.view(-1, 1, 1, 1, 1)
            xt = (1 - sv) * x0 + sv * eps
            target = eps - x0
            for group in opt.param_groups:
                group["lr"] = _lr(step, total, r["lr"], r["warmup"], r["min_lr_ratio"])
            emb = text_embeddings(text_encoder, ids[cap], mask[cap])
            pred = transformer(hidden_states=xt, timestep=s * 1000.0, encoder_hidden_states=emb,
                               return_dict=False)[0]
            loss = (pred.float() - target).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, r["grad_clip"])
            opt.step()
            decay = r["ema"] if init else min(r["ema"], (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in ema_pairs:
                    e.mul_(decay).add_(p.detach(), alpha=1 - decay)
            running.append(float(loss.detach()))
            done = step + 1
            if done % r["log_every"] == 0 or done == total:
                log(done, time.perf_counter() - t_start, loss=float(np.mean(running)),
                    lr=opt.param_groups[0]["lr"])
                running = []
            if done % r["ckpt_every"] == 0 or done == total:
                state.update(step=done, elapsed=time.perf_counter() - t_start)
                _save_atomic({"transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
                              "ema_transformer": ema_tr.state_dict(), "ema_text_encoder": ema_te.state_dict(),
                              "opt": opt.state_dict(), "state": state}, path)
                if self.stop_after and self.stop_after(section, done) and done < total:
                    raise StopTraining(f"stopped after {done} steps")
        prefix = "" if section == "transformer" else f"{section}_"
        ema_tr.save_pretrained(str(self.work / f"{prefix}transformer"))
        ema_te.save_pretrained(str(self.work / f"{prefix}text_encoder"))
        return {"stage": section, "steps": total, "seconds": state["elapsed"],
                "params": sum(p.numel() for p in transformer.parameters()),
                "text_encoder_params": sum(p.numel() for p in text_encoder.parameters())}

    # --- 5. decoder refinement (encoder frozen, so the latents the transformer learnt stay valid)
    def stage_decoder(self) -> dict[str, Any]:
        import torch

        r = self.recipe["decoder"]
        vae = self._trained_vae()
        stats = json.loads((self.work / "latent_stats.json").read_text())
        std = torch.tensor(stats["latents_std"]).view(1, -1, 1, 1, 1)
        vae.requires_grad_(False)
        trainable = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
        for p in trainable:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(trainable, lr=r["lr"], betas=(0.9, 0.99), weight_decay=0.0)
        path = self.work / "decoder.pt"
        state = {"step": 0, "log": [], "elapsed": 0.0}
        if path.exists():
            ck = _load(path)
            vae.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
            self.say(f"[decoder] resuming at step {state['step']}")
        total = r["steps"]
        log = Logger("decoder", state["log"], self.progress, total)
        t_start = time.perf_counter() - state["elapsed"]
        vae.train()
        running: list[float] = []
        for step in range(state["step"], total):
            clips = [data.make_clip(data.clip_seed(self.seed, 5, step * 1000 + b), width=self.recipe["width"],
                                    height=self.recipe["height"], num_frames=self.recipe["num_frames"])
                     for b in range(r["batch"])]
            x, cov = _clips_tensor(clips)
            for g in opt.param_groups:
                g["lr"] = _lr(step, total, r["lr"], r["warmup"], r["min_lr_ratio"])
            with torch.no_grad():
                mu = encode_mean(vae, x)
                noise = torch.randn(mu.shape, generator=_generator(self.seed, 5, step))
                mu = mu + r["latent_noise"] * std * noise  # robustness to imperfect generated latents
            y = decode_unclamped(vae, mu)
            w = 1.0 + r["fg_weight"] * cov
            err = y - x
            loss = (w * (err ** 2 + r["l1"] * err.abs())).sum() / (w.sum() * 3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, r["grad_clip"])
            opt.step()
            running.append(float(err.detach().clamp(-2, 2).pow(2).mean()))
            done = step + 1
            if done % r["log_every"] == 0 or done == total:
                m = float(np.mean(running))
                log(done, time.perf_counter() - t_start, loss=float(loss.detach()), mse=m,
                    psnr_db=10 * math.log10(4.0 / max(m, 1e-12)), lr=opt.param_groups[0]["lr"])
                running = []
            if done % r["ckpt_every"] == 0 or done == total:
                state.update(step=done, elapsed=time.perf_counter() - t_start)
                _save_atomic({"model": vae.state_dict(), "opt": opt.state_dict(), "state": state}, path)
                if self.stop_after and self.stop_after("decoder", done) and done < total:
                    raise StopTraining(f"stopped after {done} steps")
        vae.eval().requires_grad_(False)
        vae.save_pretrained(str(self.work / "vae_refined"))
        return {"stage": "decoder", "steps": total, "seconds": state["elapsed"]}

    # --- assemble
    def assemble(self, summaries: list[dict[str, Any]]) -> Path:
        import torch
        from diffusers import (AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline,
                               WanTransformer3DModel)
        from transformers import T5Tokenizer, UMT5EncoderModel

        stats = json.loads((self.work / "latent_stats.json").read_text())
        refined = self.work / "vae_refined"
        tr = "finetune_" if (self.work / "finetune_transformer").is_dir() else ""
        vae = AutoencoderKLWan.from_pretrained(str(refined if refined.is_dir() else self.work / "vae"),
                                               dtype=torch.float32)
        vae.register_to_config(**stats)
        pipe = WanPipeline(
            tokenizer=T5Tokenizer.from_pretrained(str(self.work / "tokenizer")),
            text_encoder=UMT5EncoderModel.from_pretrained(str(self.work / f"{tr}text_encoder"), dtype=torch.float32),
            transformer=WanTransformer3DModel.from_pretrained(str(self.work / f"{tr}transformer"), dtype=torch.float32),
            vae=vae, scheduler=UniPCMultistepScheduler(**self.recipe["scheduler"]),
        )
        out = self.out
        if out.exists():
            for child in out.iterdir():
                if child.name != "TRAINING.md":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        out.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(str(out), safe_serialization=True)
        for file in out.rglob("*"):
            if file.is_file():
                file.chmod(0o644)  # safetensors writes 0600; a packaged checkpoint must be world-readable
        lines = (_load(self.work / "vae.pt")["state"]["log"] + _load(self.work / "latents.pt")["log"]
                 + _load(self.work / "transformer.pt")["state"]["log"])
        for extra in ("decoder.pt", "finetune.pt"):
            if (self.work / extra).exists():
                lines += _load(self.work / extra)["state"]["log"]
        with open(out / "training_log.jsonl", "w") as fh:
            for s in summaries:
                fh.write(json.dumps({"summary": s}) + "\n")
            for line in lines:
                fh.write(json.dumps(line) + "\n")
        import diffusers
        import transformers

        meta = {"recipe": self.recipe, "recipe_hash": recipe_hash(self.recipe), "seed": self.seed,
                "threads": torch.get_num_threads(), "stage_seconds": {s["stage"]: round(s["seconds"], 1)
                                                                     for s in summaries},
                "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                             "diffusers": diffusers.__version__, "transformers": transformers.__version__},
                "command": f"python -m wanlab.toy.train --out {out} --recipe {self.recipe['name']}"}
        (out / "recipe.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_sha256sums(out)
        return out

    def stage_hash(self, stage: str) -> str:
        """Hash of the recipe parts a stage depends on (its own section and those of earlier stages)."""
        keys = ["seed", "threads", "width", "height", "num_frames"]
        for s in STAGES[: STAGES.index(stage) + 1]:
            if s in self.recipe:
                keys.append(s)
        return recipe_hash({k: self.recipe[k] for k in keys})

    def run(self) -> Path:
        summaries = []
        stamp = self.work / "stages.json"
        stamps = json.loads(stamp.read_text()) if stamp.exists() else {}
        for stage in STAGES:
            if stamps.get(stage, self.stage_hash(stage)) != self.stage_hash(stage):
                raise RuntimeError(f"{self.work} holds a {stage} stage trained with another recipe; "
                                   "pass --fresh (or another --work) to start over")
            stamps[stage] = self.stage_hash(stage)
            stamp.write_text(json.dumps(stamps, indent=1))
            marker = self.work / f"{stage}.done.json"
            if marker.exists():
                summary = json.loads(marker.read_text())
                self.say(f"[{stage}] done earlier ({summary['seconds']:.0f} s)")
            else:
                self.say(f"[{stage}] starting")
                summary = getattr(self, f"stage_{stage}")()
                marker.write_text(json.dumps(summary))
                self.say(f"[{stage}] finished in {summary['seconds']:.0f} s")
            summaries.append(summary)
        return self.assemble(summaries)


def write_sha256sums(folder: Path) -> Path:
    """``SHA256SUMS`` (sha256sum format) over every file of ``folder`` except itself and TRAINING.md."""
    from ..fsutil import sha256_file

    lines = [f"{sha256_file(f)}  {f.relative_to(folder).as_posix()}"
             for f in sorted(p for p in folder.rglob("*") if p.is_file())
             if f.name not in ("SHA256SUMS", "TRAINING.md")]
    target = folder / "SHA256SUMS"
    target.write_text("\n".join(lines) + "\n")
    return target


def check_sha256sums(folder: Path) -> list[str]:
    """Files whose sha256 differs from ``SHA256SUMS`` (empty when all match)."""
    from ..fsutil import sha256_file

    bad = []
    for line in (Path(folder) / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        file = Path(folder) / name
        if not file.is_file() or sha256_file(file) != digest:
            bad.append(name)
    return bad


def pin(threads: int) -> None:
    """Pin torch's thread count and turn on deterministic algorithms (part of the recipe)."""
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train(out: str | os.PathLike[str], recipe: str | dict[str, Any] = "full", *, work: str | None = None,
          fresh: bool = False, progress: bool = True,
          stop_after: Callable[[str, int], bool] | None = None) -> Path:
    """Run every stage of ``recipe`` (``"full"``, ``"test"`` or a dict) and save the pipeline to ``out``."""
    import torch

    rec = RECIPES[recipe] if isinstance(recipe, str) else recipe
    trainer = Trainer(Path(out), rec, Path(work) if work else None, progress, stop_after)
    if fresh and trainer.work.exists():
        shutil.rmtree(trainer.work)
        trainer.work.mkdir(parents=True)
    before = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    pin(int(rec["threads"]))
    try:
        return trainer.run()
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wanlab.toy.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the diffusers pipeline")
    parser.add_argument("--recipe", default="full", choices=sorted(RECIPES))
    parser.add_argument("--work", default=None, help="folder for stage checkpoints (default: a temp folder "
                                                      "named by the recipe's hash; re-run to resume)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier stage checkpoints")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = train(args.out, args.recipe, work=args.work, fresh=args.fresh, progress=not args.quiet)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
