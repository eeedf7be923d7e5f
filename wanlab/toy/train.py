"""Train a ``toy`` Wan checkpoint with the second-generation recipe: ``python -m wanlab.toy.train --out DIR``.

The shipped checkpoint is the first generation (trained by the code of commit 3f4b74e; its
``TRAINING.md`` says how to reproduce it and why this recipe's result was not shipped).

All stages run in order with fixed seeds and pinned threads, each resumable from its own
checkpoint in a work folder (re-run the same command after an interruption):

1. ``tokenizer``: a Unigram vocabulary in which every caption word is one token
   (``wanlab.toy.text``).
2. ``vae``: diffusers' ``AutoencoderKLWan`` (patchified input, 4x spatial and 2x temporal
   compression), first on single frames, then on full clips; the loss weights shape pixels more
   than background and is taken before the decoder's final clamp. ``temporal_init =
   "frame_aligned"`` starts from weights in which every latent frame is a per-image code
   (``wanlab.toy.autoencoder``), so Wan's causal first latent frame means what the others mean.
3. ``encode``: encoder means of a fixed set of training clips; per-channel statistics go to the
   VAE config (``latents_mean`` / ``latents_std``) as Wan does.
4. ``decoder``: the VAE decoder refined on full clips with the encoder frozen (so the latents the
   transformer learns stay valid), with a little noise on the latents for robustness.
5. ``transformer``: ``WanTransformer3DModel`` and the ``UMT5EncoderModel`` text encoder trained
   jointly with flow matching as UniPC's ``flow_prediction`` expects (x_t = (1-s) x0 + s eps,
   target eps - x0, timestep 1000 s, s shifted like the sampler), captions dropped to "" some of
   the time (classifier-free guidance), EMA weights saved.

The result is a stock diffusers pipeline folder (``WanPipeline.save_pretrained``, safetensors)
plus ``training_log.jsonl``, ``recipe.json`` and ``SHA256SUMS``. Randomness is a pure function of
(seed, stage, step), so a resumed run gives the same weights as an uninterrupted one; the same
recipe, thread count, machine and versions give bit-identical weights.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import data
from .autoencoder import (
    clips_tensor,
    decode_unclamped,
    encode_mean,
    init_frame_aligned,
    latent_coverage,
    reconstruction_loss,
    single_frame_convs,
)
from .recipe import RECIPE, RECIPES, STAGES, TEST_RECIPE, recipe_hash, stage_hash
from .resume import Loop, StopTraining, generator, load_checkpoint, lr_at
from .text import build_tokenizer, text_embeddings, tokenize

__all__ = ["train", "Trainer", "StopTraining", "RECIPE", "TEST_RECIPE", "RECIPES", "STAGES", "pin",
           "write_sha256sums", "check_sha256sums", "build_tokenizer", "tokenize"]


def _psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on [-1, 1] pixels."""
    return 10 * math.log10(4.0 / max(mse, 1e-12))


class Trainer:
    """Runs a recipe's stages in a work folder (one checkpoint per stage) and assembles the pipeline."""

    def __init__(self, out: Path, recipe: dict[str, Any], work: Path | None = None, progress: bool = True,
                 stop_after: Callable[[str, int], bool] | None = None, init: Path | None = None) -> None:
        self.out = Path(out)
        self.recipe = recipe
        self.init = Path(init) if init else None  # where the recipe's init checkpoint is (its sha256s pin what)
        self.seed = int(recipe["seed"])
        self.work = Path(work) if work else (Path(tempfile.gettempdir()) / "wanlab-toy-work"
                                             / f"{recipe['name']}-{recipe['seed']}")
        self.progress = progress
        self.stop_after = stop_after  # tests: simulate an interruption
        self.work.mkdir(parents=True, exist_ok=True)

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, flush=True)

    def loop(self, name: str, total: int, section: dict[str, Any]) -> Loop:
        """The resumable loop of stage ``name``, checkpointed to ``<work>/<name>.pt``."""
        return Loop(name, self.work / f"{name}.pt", total, log_every=section.get("log_every", 1),
                    ckpt_every=section.get("ckpt_every", max(1, total)), progress=self.progress,
                    stop_after=self.stop_after)

    def clips(self, stage: int, step: int, batch: int) -> list[data.Clip]:
        """The training clips of one step: a pure function of (seed, stage, step)."""
        size = {k: self.recipe[k] for k in ("width", "height", "num_frames")}
        return [data.make_clip(data.clip_seed(self.seed, stage, step * 1000 + b), **size) for b in range(batch)]

    # --- 1. tokenizer
    def stage_tokenizer(self) -> dict[str, Any]:
        t0, c0 = time.perf_counter(), time.process_time()
        tok = build_tokenizer()
        tok.save_pretrained(str(self.work / "tokenizer"))
        if len(tok(" ".join(data.WORDS)).input_ids) != len(data.WORDS) + 1:
            raise RuntimeError("every caption word must be one token")
        return {"stage": "tokenizer", "vocab_size": len(tok), "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0}

    # --- 2. VAE
    def stage_vae(self) -> dict[str, Any]:
        import torch
        from diffusers import AutoencoderKLWan

        r = self.recipe["vae"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            vae = AutoencoderKLWan(**r["config"])
        if r.get("temporal_init", "random") == "frame_aligned":
            init_frame_aligned(vae)
        opt = torch.optim.AdamW(vae.parameters(), lr=r["lr"], betas=(0.9, 0.99), weight_decay=0.0)
        loop = self.loop("vae", r["image_steps"] + r["video_steps"], r)
        ck = loop.resume()
        if ck:
            vae.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
        vae.train()
        running: list[float] = []
        for step in loop.steps():
            image = step < r["image_steps"]
            clips = self.clips(1, step, r["image_batch"] if image else r["video_batch"])
            frame = None
            if image:
                pick = np.random.default_rng([self.seed, 1, step, 7])
                frame = [int(pick.integers(self.recipe["num_frames"])) for _ in clips]
            x, cov = clips_tensor(clips, frame)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, loop.total, r["lr"], r["warmup"], r["min_lr_ratio"])
            with single_frame_convs(vae) if image else contextlib.nullcontext():
                mu = encode_mean(vae, x)
                y = decode_unclamped(vae, mu)
                loss = (reconstruction_loss(y, x, cov, r["fg_weight"], r["l1"], r.get("edge", 0.0))
                        + r["latent_l2"] * mu.pow(2).mean())
                opt.zero_grad(set_to_none=True)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), r["grad_clip"])
            opt.step()
            with torch.no_grad():
                running.append(float((y - x).clamp(-2, 2).pow(2).mean()))
            done = step + 1
            if loop.due(done):
                loop.log(done, loss=float(loss.detach()), mse=float(np.mean(running)),
                         psnr_db=_psnr(float(np.mean(running))), lr=opt.param_groups[0]["lr"],
                         phase="image" if image else "video")
                running = []
            loop.end_step(done, lambda: {"model": vae.state_dict(), "opt": opt.state_dict()})
        vae.eval().requires_grad_(False)
        vae.save_pretrained(str(self.work / "vae"))
        return {"stage": "vae", "steps": loop.total, "seconds": loop.seconds, "cpu_seconds": loop.cpu_seconds,
                "params": sum(p.numel() for p in vae.parameters())}

    def trained_vae(self, folder: str = "vae") -> Any:
        """A VAE saved in the work folder, realigned so it computes as it did in memory."""
        import torch
        from diffusers import AutoencoderKLWan

        from ..models.loading import realign

        vae = AutoencoderKLWan.from_pretrained(str(self.work / folder), dtype=torch.float32)
        realign(vae)
        return vae

    # --- 3. latent encoding
    def stage_encode(self) -> dict[str, Any]:
        import torch

        r = self.recipe["encode"]
        vae = self.trained_vae().eval()
        captions = data.TRAIN_CAPTIONS
        batches = math.ceil(r["clips"] / r["batch"])
        loop = self.loop("encode", batches, {"log_every": max(1, r["ckpt_every"] // r["batch"]),
                                              "ckpt_every": max(1, r["ckpt_every"] // r["batch"])})
        ck = loop.resume() or {"latents": [], "captions": [], "coverage": []}
        size = {k: self.recipe[k] for k in ("width", "height", "num_frames")}
        factors = (vae.config.scale_factor_spatial, vae.config.scale_factor_temporal)
        for step in loop.steps():
            idx = list(range(step * r["batch"], min(r["clips"], (step + 1) * r["batch"])))
            clips = [data.make_clip(data.clip_seed(self.seed, 2, i), captions[i % len(captions)], **size) for i in idx]
            x, cov = clips_tensor(clips)
            with torch.no_grad():
                ck["latents"].append(encode_mean(vae, x))
            ck["coverage"].append(latent_coverage(cov, *factors).to(torch.float16))
            ck["captions"] += [i % len(captions) for i in idx]
            if loop.due(step + 1):
                loop.log(step + 1, clips=len(ck["captions"]))
            loop.end_step(step + 1, lambda: {k: ck[k] for k in ("latents", "captions", "coverage")})
        lat = torch.cat(ck["latents"])
        stats = {"latents_mean": [float(v) for v in lat.mean(dim=(0, 2, 3, 4))],
                 "latents_std": [float(v) for v in lat.std(dim=(0, 2, 3, 4))]}
        from ..fsutil import write_json

        write_json(self.work / "latent_stats.json", stats)
        return {"stage": "encode", "clips": r["clips"], "seconds": loop.seconds, "cpu_seconds": loop.cpu_seconds,
                **stats}

    def latent_stats(self):
        """(mean, std) tensors (1, C, 1, 1, 1) of the encoded training latents."""
        import torch

        stats = json.loads((self.work / "latent_stats.json").read_text())
        return (torch.tensor(stats["latents_mean"]).view(1, -1, 1, 1, 1),
                torch.tensor(stats["latents_std"]).view(1, -1, 1, 1, 1))

    # --- 5. transformer + text encoder
    def transformer_data(self) -> tuple[Any, Any, Any, Any, Any, int, int]:
        """The transformer stage's training set: normalised latents, their loss weights (or None), caption
        indices, token ids and mask of every caption and "", the index of "", and the vocabulary size."""
        import torch
        from transformers import T5Tokenizer

        r = self.recipe["transformer"]
        tok = T5Tokenizer.from_pretrained(str(self.work / "tokenizer"))
        encoded = load_checkpoint(self.work / "encode.pt")
        mean, std = self.latent_stats()
        latents = ((torch.cat(encoded["latents"]) - mean) / std).contiguous()
        fg_weight = float(r.get("fg_weight", 0.0))
        weights = 1.0 + fg_weight * torch.cat(encoded["coverage"]).float() if fg_weight else None
        texts = [*data.TRAIN_CAPTIONS, ""]
        ids, mask = tokenize(tok, texts, r["max_sequence_length"])
        return latents, weights, torch.tensor(encoded["captions"]), ids, mask, len(texts) - 1, len(tok)

    def transformer_models(self, vocab_size: int) -> tuple[Any, Any]:
        """``(transformer, text_encoder)``: seeded fresh modules, or the recipe's ``init`` checkpoint's weights."""
        import torch
        from diffusers import WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        r = self.recipe["transformer"]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 2)
            text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=vocab_size, **r["text_encoder"]))
            torch.manual_seed(self.seed + 3)
            transformer = WanTransformer3DModel(**r["config"])
        if r.get("init"):
            self.warm_start(r["init"], transformer, text_encoder)
        return transformer, text_encoder

    def stage_transformer(self) -> dict[str, Any]:
        import torch

        r = self.recipe["transformer"]
        latents, weights, cap_index, ids, mask, empty, vocab_size = self.transformer_data()
        transformer, text_encoder = self.transformer_models(vocab_size)
        params = list(transformer.parameters()) + list(text_encoder.parameters())
        opt = torch.optim.AdamW(params, lr=r["lr"], betas=(0.9, 0.99), weight_decay=r["weight_decay"])
        ema_tr = copy.deepcopy(transformer).requires_grad_(False)
        ema_te = copy.deepcopy(text_encoder).requires_grad_(False)
        loop = self.loop("transformer", r["steps"], r)
        ck = loop.resume()
        if ck:
            for module, key in ((transformer, "transformer"), (text_encoder, "text_encoder"),
                                (ema_tr, "ema_transformer"), (ema_te, "ema_text_encoder"), (opt, "opt")):
                module.load_state_dict(ck[key])
        transformer.train()
        text_encoder.train()
        batch, shift = r["batch"], r["shift"]
        running: list[float] = []
        ema_pairs = list(zip(list(ema_tr.parameters()) + list(ema_te.parameters()), params))
        for step in loop.steps():
            g = generator(self.seed, 4, step)
            pick = torch.randint(len(latents), (batch,), generator=g)
            x0 = latents[pick]
            cap = cap_index[pick].clone()
            cap[torch.rand(batch, generator=g) < r["caption_dropout"]] = empty
            u = torch.rand(batch, generator=g)
            s = shift * u / (1 + (shift - 1) * u)
            eps = torch.randn(x0.shape, generator=g)
            sv = s.view(-1, 1, 1, 1, 1)
            xt = (1 - sv) * x0 + sv * eps
            for group in opt.param_groups:
                group["lr"] = lr_at(step, loop.total, r["lr"], r["warmup"], r["min_lr_ratio"])
            emb = text_embeddings(text_encoder, ids[cap], mask[cap])
            pred = transformer(hidden_states=xt, timestep=s * 1000.0, encoder_hidden_states=emb,
                               return_dict=False)[0]
            err = (pred.float() - (eps - x0)).pow(2)
            if weights is None:
                loss = err.mean()
            else:  # shape cells weigh more: the shape is a few cells of a uniform background
                w = weights[pick]
                loss = (w * err).sum() / (w.sum() * err.shape[1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, r["grad_clip"])
            opt.step()
            decay = min(r["ema"], (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in ema_pairs:
                    e.mul_(decay).add_(p.detach(), alpha=1 - decay)
            running.append(float(loss.detach()))
            done = step + 1
            if loop.due(done):
                loop.log(done, loss=float(np.mean(running)), lr=opt.param_groups[0]["lr"])
                running = []
            loop.end_step(done, lambda: {
                "transformer": transformer.state_dict(), "text_encoder": text_encoder.state_dict(),
                "ema_transformer": ema_tr.state_dict(), "ema_text_encoder": ema_te.state_dict(),
                "opt": opt.state_dict()})
        ema_tr.save_pretrained(str(self.work / "transformer"))
        ema_te.save_pretrained(str(self.work / "text_encoder"))
        return {"stage": "transformer", "steps": loop.total, "seconds": loop.seconds, "cpu_seconds": loop.cpu_seconds,
                "params": sum(p.numel() for p in transformer.parameters()),
                "text_encoder_params": sum(p.numel() for p in text_encoder.parameters())}

    def warm_start(self, init: dict[str, Any], transformer: Any, text_encoder: Any) -> None:
        """Load ``init``'s transformer and text encoder weights (sha256-pinned) into the fresh modules."""
        from diffusers import WanTransformer3DModel
        from transformers import UMT5EncoderModel

        from ..fsutil import sha256_file

        folder = str(self.init) if self.init else init["folder"]
        if folder.startswith("builtin:"):
            from ..models.registry import BUILTIN_FOLDERS

            folder = str(BUILTIN_FOLDERS[folder.removeprefix("builtin:")])
        for name, digest in init["sha256"].items():
            file = Path(folder) / name
            if not file.is_file() or sha256_file(file) != digest:
                raise RuntimeError(f"{file} is not the checkpoint this recipe starts from (sha256 {digest[:12]}...); "
                                   "pass --init with a folder that holds it: the first generation is "
                                   "wanlab/models/toy of commit c37a6d3 (git worktree add /tmp/toy-gen1 c37a6d3; "
                                   "--init /tmp/toy-gen1/wanlab/models/toy)")
        folder = Path(folder)
        transformer.load_state_dict(WanTransformer3DModel.from_pretrained(str(folder / "transformer")).state_dict())
        text_encoder.load_state_dict(UMT5EncoderModel.from_pretrained(str(folder / "text_encoder")).state_dict())

    # --- 4. decoder refinement (encoder frozen, so the latents the transformer learnt stay valid)
    def stage_decoder(self) -> dict[str, Any]:
        import torch

        r = self.recipe["decoder"]
        vae = self.trained_vae()
        _, std = self.latent_stats()
        vae.requires_grad_(False)
        trainable = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
        for p in trainable:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(trainable, lr=r["lr"], betas=(0.9, 0.99), weight_decay=0.0)
        loop = self.loop("decoder", r["steps"], r)
        ck = loop.resume()
        if ck:
            vae.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
        vae.train()
        running: list[float] = []
        for step in loop.steps():
            x, cov = clips_tensor(self.clips(5, step, r["batch"]))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, loop.total, r["lr"], r["warmup"], r["min_lr_ratio"])
            with torch.no_grad():
                mu = encode_mean(vae, x)
                noise = torch.randn(mu.shape, generator=generator(self.seed, 5, step))
                mu = mu + r["latent_noise"] * std * noise  # robustness to imperfect generated latents
            y = decode_unclamped(vae, mu)
            loss = reconstruction_loss(y, x, cov, r["fg_weight"], r["l1"], r.get("edge", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, r["grad_clip"])
            opt.step()
            running.append(float((y - x).detach().clamp(-2, 2).pow(2).mean()))
            done = step + 1
            if loop.due(done):
                m = float(np.mean(running))
                loop.log(done, loss=float(loss.detach()), mse=m, psnr_db=_psnr(m), lr=opt.param_groups[0]["lr"])
                running = []
            loop.end_step(done, lambda: {"model": vae.state_dict(), "opt": opt.state_dict()})
        vae.eval().requires_grad_(False)
        vae.save_pretrained(str(self.work / "vae_refined"))
        return {"stage": "decoder", "steps": loop.total, "seconds": loop.seconds, "cpu_seconds": loop.cpu_seconds}

    # --- assemble
    def assemble(self, summaries: list[dict[str, Any]]) -> Path:
        """Save the stock ``WanPipeline`` folder, its training log, ``recipe.json`` and ``SHA256SUMS``."""
        import diffusers
        import torch
        import transformers
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
        from transformers import T5Tokenizer, UMT5EncoderModel

        from ..fsutil import write_json

        refined = self.work / "vae_refined"
        vae = AutoencoderKLWan.from_pretrained(str(refined if refined.is_dir() else self.work / "vae"),
                                               dtype=torch.float32)
        vae.register_to_config(**json.loads((self.work / "latent_stats.json").read_text()))
        pipe = WanPipeline(
            tokenizer=T5Tokenizer.from_pretrained(str(self.work / "tokenizer")),
            text_encoder=UMT5EncoderModel.from_pretrained(str(self.work / "text_encoder"), dtype=torch.float32),
            transformer=WanTransformer3DModel.from_pretrained(str(self.work / "transformer"), dtype=torch.float32),
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
        lines = [line for stage in STAGES
                 if (self.work / f"{stage}.pt").exists()
                 for line in load_checkpoint(self.work / f"{stage}.pt")["state"]["log"]]
        with open(out / "training_log.jsonl", "w") as fh:
            for s in summaries:
                fh.write(json.dumps({"summary": s}) + "\n")
            for line in lines:
                fh.write(json.dumps(line) + "\n")
        write_json(out / "recipe.json", {
            "recipe": self.recipe, "recipe_hash": recipe_hash(self.recipe), "seed": self.seed,
            "threads": torch.get_num_threads(),
            "stage_seconds": {s["stage"]: round(s["seconds"], 1) for s in summaries},
            "stage_cpu_seconds": {s["stage"]: round(s.get("cpu_seconds", 0.0), 1) for s in summaries},
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "diffusers": diffusers.__version__, "transformers": transformers.__version__},
            "command": f"python -m wanlab.toy.train --out {out} --recipe {self.recipe['name']}"})
        write_sha256sums(out)
        return out

    def run(self) -> Path:
        """Every stage in order (finished ones skipped, an interrupted one resumed), then :meth:`assemble`."""
        from ..fsutil import write_json

        summaries = []
        stamp = self.work / "stages.json"
        stamps = json.loads(stamp.read_text()) if stamp.exists() else {}
        for stage in STAGES:
            expected = stage_hash(self.recipe, stage)
            if stamps.get(stage, expected) != expected:
                raise RuntimeError(f"{self.work} holds a {stage} stage trained with another recipe; "
                                   "pass --fresh (or another --work) to start over")
            stamps[stage] = expected
            write_json(stamp, stamps)
            marker = self.work / f"{stage}.done.json"
            if marker.exists():
                summary = json.loads(marker.read_text())
                self.say(f"[{stage}] done earlier ({summary['seconds']:.0f} s)")
            else:
                self.say(f"[{stage}] starting")
                summary = getattr(self, f"stage_{stage}")()
                write_json(marker, summary)
                self.say(f"[{stage}] finished in {summary['seconds']:.0f} s")
            summaries.append(summary)
        return self.assemble(summaries)


def write_sha256sums(folder: Path) -> Path:
    """``SHA256SUMS`` (sha256sum format) over every file of ``folder`` except itself and TRAINING.md."""
    from ..fsutil import sha256_file, write_text

    lines = [f"{sha256_file(f)}  {f.relative_to(folder).as_posix()}"
             for f in sorted(p for p in folder.rglob("*") if p.is_file())
             if f.name not in ("SHA256SUMS", "TRAINING.md")]
    return write_text(folder / "SHA256SUMS", "\n".join(lines) + "\n")


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
          stop_after: Callable[[str, int], bool] | None = None, init: str | os.PathLike[str] | None = None) -> Path:
    """Run every stage of ``recipe`` and save the pipeline to ``out``.

    Args:
        out: the folder of the diffusers pipeline (replaced, but for its ``TRAINING.md``).
        recipe: a name in :data:`RECIPES` (``"warm-high-lr"`` trained the shipped checkpoint) or a recipe dict.
        work: the folder of stage checkpoints (default: a temp folder named by the recipe); rerun to resume.
        fresh: discard earlier stage checkpoints in ``work``.
        progress: print each stage's progress.
        stop_after: tests: ``(stage, step) -> True`` interrupts the run there.
        init: warm recipes: the folder holding the checkpoint they start from (its files must match the
            recipe's sha256s); default: the recipe's own folder.

    Returns:
        ``out``.

    Raises:
        RuntimeError: ``work`` holds stages of another recipe, or ``init`` is not the pinned checkpoint.

    Example:
        >>> train("out/toy", "test", work="out/toy-work")  # doctest: +SKIP
        PosixPath('out/toy')
    """
    import torch

    rec = RECIPES[recipe] if isinstance(recipe, str) else recipe
    trainer = Trainer(Path(out), rec, Path(work) if work else None, progress, stop_after,
                      Path(init) if init else None)
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
                                                      "named by the recipe; re-run to resume)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier stage checkpoints")
    parser.add_argument("--init", default=None, metavar="FOLDER",
                        help="warm recipes: the folder holding the checkpoint they start from (its files' sha256 "
                             "must match the recipe's; default: the recipe's own folder)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = train(args.out, args.recipe, work=args.work, fresh=args.fresh, progress=not args.quiet, init=args.init)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
