"""The local backend: a loaded Wan pipeline that turns validated requests into :class:`Video` s.

:func:`load` makes a :class:`Pipeline` (the weights through :mod:`wanlab.models.loading`); it runs
diffusers' own ``WanPipeline`` call with wanlab's additions: a fresh scheduler per call, cached prompt
embeddings, LoRAs weighted per call, acceleration around the denoising loop, staged timings, a garbage
check after every step, and a record that says everything needed to repeat the run.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import BackendBase, Job
from .errors import GenerationError, ParamError, PromptWarning, TrainedSizeWarning, TruncationError, warn
from .frames import WAN_FPS, to_uint8
from .inputs import AccelLike
from .models import internals
from .models.registry import DEFAULT_MODEL
from .models.scope import prompt_message, scope_of, size_message
from .params import Params
from .record import environment, now_iso
from .tasks import TaskMethods
from .video import Video

if TYPE_CHECKING:  # pragma: no cover
    from .models.identity import ModelIdentity

EMBED_CACHE_SIZE = 64
TOKEN_CACHE_SIZE = 4096
TRUNCATE = ("warn", "error")


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device`` (CUDA and MPS run kernels asynchronously), so a stage's time is its own.

    Nothing to do on CPU.

    Args:
        device: ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``.
    """
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def check_finite(tensor: Any, what: str) -> None:
    """Raise :class:`GenerationError` when ``tensor`` holds NaN or infinity: garbage is never a result.

    Checked after every denoising step (so the message names the first bad step) and after decoding.

    Args:
        tensor: latents or decoded frames.
        what: names the tensor in the message (``"the latents after step 3"``).

    Raises:
        GenerationError: NaN or inf found (the count is in the message; the run is not stored).
    """
    import torch

    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise GenerationError(f"non-finite values (NaN or inf) in {what}: {bad} of {tensor.numel()} values; "
                              "a broken LoRA or an unstable setting can cause this; the run is not stored")


def load(model: str | os.PathLike[str] = DEFAULT_MODEL, *, device: str | None = None, dtype: Any = None,
         cpu_offload: bool = False, vae_tiling: bool = False, max_sequence_length: int | None = None,
         progress: bool | None = None, accel: AccelLike = None, group_offload: str | bool | None = None) -> Pipeline:
    """Load a Wan 2.1 text-to-video pipeline.

    No download is attempted: a hub id missing from the local Hugging Face cache fails at once, saying
    how to get it.

    Args:
        model: a built-in name (``"toy"``: trained on moving shapes, the default; ``"tiny"``: random
            weights, for tests), a local diffusers folder, or a hub id such as
            ``"Wan-AI/Wan2.1-T2V-14B-Diffusers"`` read from the local Hugging Face cache.
        device: ``"cuda"``, ``"cpu"``, ... (None: CUDA when available, else CPU).
        dtype: the transformer's and text encoder's dtype (None: bfloat16 on CUDA, float32 on CPU);
            the VAE stays float32, as Wan recommends.
        cpu_offload: move each component to the device only while it runs (diffusers' model offload).
        vae_tiling: decode the VAE in tiles (less memory for large videos).
        max_sequence_length: the text length prompts are encoded at (None: the model's).
        progress: None loads quietly and shows a bar while generating; True shows the loading bars
            too (worth it for the 14B model's minutes of loading); False shows none.
        accel: the default acceleration setting of every call (a :class:`wanlab.accel.Accel`, a preset
            name such as ``"fbc"`` or a mapping; None: exact).
        group_offload: ``"block_level"``, ``"leaf_level"`` or True (CUDA only): diffusers' group
            offloading instead of moving the whole pipeline to the device.

    Returns:
        The loaded :class:`Pipeline`.

    Raises:
        ParamError: a bad option (an unknown ``model`` form, ``device``, ``dtype``, ...).
        LoadError: no such model, a folder that is not a diffusers Wan pipeline, a hub id not in the
            local cache, or weights that do not load.

    Example:
        >>> pipe = wanlab.load("toy")  # doctest: +SKIP
        >>> pipe.generate(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
        Video(17 frames, 64x64, 16 fps, seed=1, digest=...)
    """
    from .models.loading import load_weights

    loaded = load_weights(model, device=device, dtype=dtype, cpu_offload=cpu_offload, vae_tiling=vae_tiling,
                          max_sequence_length=max_sequence_length, progress=progress, accel=accel,
                          group_offload=group_offload)
    return Pipeline(loaded.diffusers, loaded.identity, device=loaded.device, accel=loaded.accel)


class Pipeline(TaskMethods, BackendBase):
    """A loaded Wan pipeline: validated requests in, :class:`Video` out.

    A backend (:mod:`wanlab.backend`): besides :meth:`generate` it has the hosted API's task methods
    (``submit``, ``task_result``, ``wait``, ``cancel``). Make one with :func:`wanlab.load`.

    Attributes:
        diffusers: the underlying ``diffusers.WanPipeline``, for anything wanlab does not wrap.
        identity: which model and settings it runs (:class:`~wanlab.models.identity.ModelIdentity`).
        device: the device it runs on.
        accel: the default acceleration setting; ``generate(accel=...)`` overrides it per call.
        loras: the LoRA adapters loaded into it (:class:`wanlab.lora.LoRASet`).

    Example:
        >>> pipe = wanlab.load("toy")  # doctest: +SKIP
        >>> video = pipe.generate(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
        >>> with wanlab.load("toy") as pipe:  # doctest: +SKIP
        ...     task_id = pipe.submit(prompt="a blue circle moving left slowly")
    """

    def __init__(self, pipe: Any, identity: ModelIdentity, *, device: str, accel: AccelLike = None) -> None:
        from .accel.setting import Accel
        from .lora import LoRASet

        self.diffusers = pipe
        self.identity = identity
        self.device = device
        self._scheduler_class = type(pipe.scheduler)
        self._scheduler_config = dict(pipe.scheduler.config)
        self._embeds: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._tokens: dict[str, int] = {}
        self._warned: set[Any] = set()
        #: What the model knows (its card's vocabulary and trained size): requests outside it warn.
        self.scope = scope_of(identity.model_id, identity.source)
        self._lock = threading.RLock()  # held while the model generates (the transformer and scheduler are shared)
        self._worker_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self.loras = LoRASet(pipe)
        #: The default acceleration setting (``wanlab.accel.Accel``); ``generate(accel=...)`` overrides it.
        self.accel = Accel.coerce(accel)

    def __repr__(self) -> str:
        return (f"Pipeline(model={self.model_id!r}, device={self.device!r}, "
                f"dtype={self.identity.settings['dtype']!r})")

    # --- identity ----------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The model's id (a built-in name, a folder's path or a hub id)."""
        return self.identity.model_id

    @property
    def source(self) -> str:
        """Where the weights came from (``"builtin"``, ``"folder"`` or ``"hub"``)."""
        return self.identity.source

    @property
    def fingerprint(self) -> str:
        """sha256 identifying the weights (recorded for built-ins, the files' hashes for folders and hub ids)."""
        return self.identity.fingerprint

    @property
    def native(self) -> dict[str, Any]:
        """Request fields this model fills in when a request leaves them unset."""
        return dict(self.identity.native)

    @property
    def max_sequence_length(self) -> int:
        """The text length prompts are encoded at (the model's, or the one given to ``load``)."""
        return int(self.identity.settings["max_sequence_length"])

    @property
    def model_info(self) -> dict[str, str]:
        """The model as records hold it (id, source, fingerprint)."""
        return self.identity.model_info

    def generation_settings(self) -> dict[str, Any]:
        """Every setting besides the request that changes frames.

        Returns:
            The identity's settings (dtype, sequence length, scheduler, ...): part of records and run keys.
        """
        return self.identity.to_dict()["settings"]

    @property
    def max_in_flight(self) -> int:
        """Jobs worth starting at once.

        2 when generating leaves CPU free (a GPU, or torch using fewer threads than there are cores),
        so storing one run overlaps the next generation; else 1 (on 2 CPU cores with torch on both,
        overlapping made sweeps ~10 % slower: benchmarks/bench_sweep.py).
        """
        import torch

        if self.device != "cpu" or torch.get_num_threads() < (os.cpu_count() or 1):
            return 2
        return 1

    # --- requests ----------------------------------------------------------------------------------
    def describe_loras(self, params: Params) -> list[dict[str, Any]]:
        """Each LoRA of ``params`` as records and run keys hold it.

        Args:
            params: the request whose LoRAs are described.

        Returns:
            One dict per LoRA (path, scale, the file's sha256 under this pipeline's LoRA policy).

        Raises:
            LoRAError: a LoRA file that is missing or cannot be read under the policy.
        """
        return self.loras.describe(params.loras)

    @property
    def lora_policy(self) -> Any:
        """Which LoRA path forms jobs may use (``pipe.loras.policy``)."""
        return self.loras.policy

    def set_lora_policy(self, policy: Any) -> None:
        """Set which LoRA path forms jobs may use from now on.

        Args:
            policy: a :class:`wanlab.lora.SourcePolicy` (None: the library's default).
        """
        from .lora import SourcePolicy

        self.loras.policy = policy or SourcePolicy()

    def prompt_tokens(self, text: str) -> int:
        """How many tokens ``text`` encodes to (with the end token), before any truncation.

        Counted after the cleaning diffusers applies to prompts (ftfy, HTML entities, whitespace).

        Args:
            text: a prompt.

        Returns:
            The token count; more than :attr:`max_sequence_length` means the text encoder cuts it.
        """
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        if text not in self._tokens:
            ids = self.diffusers.tokenizer(prompt_clean(text), add_special_tokens=True, truncation=False).input_ids
            self._tokens[text] = len(ids)
            while len(self._tokens) > TOKEN_CACHE_SIZE:
                self._tokens.pop(next(iter(self._tokens)))
        return self._tokens[text]

    def _check_length(self, p: Params, truncate: str) -> dict[str, Any]:
        """Token counts of the prompts; warn once per text (or refuse) when they exceed the model's length."""
        limit = self.max_sequence_length
        out: dict[str, Any] = {"prompt_tokens": self.prompt_tokens(p.prompt)}
        if p.guidance_scale > 1.0 and p.negative_prompt:
            out["negative_prompt_tokens"] = self.prompt_tokens(p.negative_prompt)
        long = {name.removesuffix("_tokens"): n for name, n in out.items() if n > limit}
        out["truncated"] = bool(long)
        for field, n in long.items():
            if truncate == "error":
                raise TruncationError(field, f"at most {limit} tokens (this model's max_sequence_length); it would "
                                      "be cut", f"{n} tokens")
            self._warn_once(("length", getattr(p, field)), PromptWarning,
                            f"{field} is {n} tokens long; this model reads {limit} (max_sequence_length), so the "
                            "rest is cut and does not change the video")
        return out

    def advise(self, params: Params, truncate: str = "warn") -> None:
        """Warn (once each) about what this model cannot follow in ``params``.

        A prompt longer than it reads, words outside its vocabulary, a size away from the one it was
        trained at. The warnings point at the caller's line; :meth:`generate` and :meth:`start` call
        this in the caller's thread.

        Args:
            params: the resolved request.
            truncate: ``"warn"`` checks prompt lengths too; ``"error"`` leaves them to the run, which refuses.
        """
        fields = ["prompt"] + (["negative_prompt"] if params.guidance_scale > 1.0 and params.negative_prompt else [])
        for name in fields:
            unknown = self.scope.unknown_words(getattr(params, name))
            if unknown:
                self._warn_once(("words", getattr(params, name)), PromptWarning,
                                prompt_message(self.model_id, name, unknown, self.scope))
        off = self.scope.off_size(params)
        if off:
            asked = {name: getattr(params, name) for name in self.scope.trained}
            self._warn_once(("size", tuple(asked.items())), TrainedSizeWarning,
                            size_message(self.model_id, asked, self.scope))
        if truncate == "warn":
            self._check_length(params, truncate)

    def _warn_once(self, key: Any, category: type[Warning], message: str) -> None:
        with self._worker_lock:
            if key in self._warned or len(self._warned) >= TOKEN_CACHE_SIZE:
                return
            self._warned.add(key)
        warn(message, category)

    # --- the model -----------------------------------------------------------------------------------
    def encode(self, text: str) -> Any:
        """Text-encoder embedding of ``text`` at this model's sequence length, cached per text.

        Bit-identical to letting diffusers encode the prompt inside its call.

        Args:
            text: a prompt.

        Returns:
            The embedding tensor.
        """
        import torch

        key = (text, self.max_sequence_length)
        with self._lock:
            if key in self._embeds:
                self._embeds.move_to_end(key)
                return self._embeds[key]
            with torch.inference_mode():
                embeds, _ = self.diffusers.encode_prompt(
                    prompt=text, do_classifier_free_guidance=False,
                    max_sequence_length=self.max_sequence_length, device=internals.execution_device(self.diffusers),
                )
            self._embeds[key] = embeds
            while len(self._embeds) > EMBED_CACHE_SIZE:
                self._embeds.popitem(last=False)
            return embeds

    def forget_embeddings(self) -> None:
        """Drop the cached prompt embeddings (benchmarks measure what reusing them saves)."""
        with self._lock:
            self._embeds.clear()

    def denoise(self, params: Params, *, accel: AccelLike = None, on_step: Callable[[int, int], None] | None = None,
                progress: bool | None = None, probes: Any = None) -> tuple[Any, dict[str, Any]]:
        """The denoising loop alone for a resolved request.

        Its LoRAs, a fresh scheduler with its ``flow_shift``, cached prompt embeddings and
        ``accel`` applied around the loop.

        Args:
            params: the resolved request.
            accel: the acceleration setting (an ``Accel``; None: exact).
            on_step: called as ``on_step(done, total)`` after each step.
            progress: show a progress bar over the steps.
            probes: what to record inside the model (:mod:`wanlab.probes`).

        Returns:
            ``(latents, info)``: the final latents and what happened: ``timings`` (loras, encode,
            denoise), the record's ``loras`` entry, the applied setting (``accel``, an
            :class:`wanlab.accel.apply.Applied`) and the recorded ``probes`` (a
            :class:`wanlab.probes.Probes`, or None when ``probes`` asks for none).

        Raises:
            GenerationError: NaN or inf in the latents after a step.
            LoRAError: a LoRA file that cannot be loaded.
            ProbeError: a probe setting that breaks its rule, or a word the prompt lacks.
        """
        import torch

        from .accel.apply import applied
        from .accel.setting import Accel
        from .probes.record import recording
        from .probes.spec import check_accel, normalize

        p = params
        probes = normalize(probes)
        check_accel(probes, Accel.coerce(self.accel if accel is None else accel))
        pipe = self.diffusers
        with self._lock:
            t_start = time.perf_counter()
            loras = self.loras.apply(p.loras)
            pipe.scheduler = self._scheduler_class.from_config(self._scheduler_config, flow_shift=p.flow_shift)
            t_encode = time.perf_counter()
            prompt_embeds = self.encode(p.prompt)
            negative_embeds = self.encode(p.negative_prompt) if p.guidance_scale > 1.0 else None
            synchronize(self.device)
            t_accel = time.perf_counter()

            def callback(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                check_finite(kwargs["latents"], f"the latents after denoising step {i + 1} of {p.steps}")
                if on_step is not None:
                    on_step(i + 1, p.steps)
                return {}

            saved_bar = internals.progress_bar_config(pipe)
            if progress is not None:
                pipe.set_progress_bar_config(disable=not progress, leave=False)
            generator = torch.Generator("cpu").manual_seed(p.seed)
            try:  # acceleration is applied around the denoising loop only and always undone
                with applied(self, self.accel if accel is None else accel, p) as acc, \
                        recording(self, p, probes) as recorder:
                    synchronize(self.device)
                    t_denoise = time.perf_counter()
                    with torch.inference_mode():
                        latents = pipe(
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=p.height,
                            width=p.width, num_frames=p.num_frames, num_inference_steps=p.steps,
                            guidance_scale=p.guidance_scale, generator=generator, output_type="latent",
                            max_sequence_length=self.max_sequence_length, callback_on_step_end=callback,
                        ).frames
                    synchronize(self.device)  # GPU kernels run asynchronously: the loop ends when they do
                    t_end = time.perf_counter()
            finally:
                internals.restore_progress_bar_config(pipe, saved_bar)
            recorded = recorder.results(self) if recorder is not None else None
        timings = {"loras": t_encode - t_start, "encode": t_accel - t_encode, "denoise": t_end - t_denoise,
                   "setup": t_denoise - t_accel}
        return latents, {"timings": timings, "loras": loras, "accel": acc, "probes": recorded}

    def decode(self, latents: Any) -> np.ndarray:
        """VAE-decode final latents to uint8 frames (T, H, W, 3), as diffusers' own call does.

        Args:
            latents: a tensor or a numpy array, normalised as the denoising loop leaves them.

        Returns:
            The frames.

        Raises:
            GenerationError: NaN or inf in the decoded frames.
        """
        import torch
        from diffusers.utils.torch_utils import get_module_execution_device

        if isinstance(latents, np.ndarray):
            latents = torch.from_numpy(latents)
        pipe = self.diffusers
        vae = pipe.vae
        latents = latents.to(get_module_execution_device(vae), dtype=vae.dtype)
        with torch.inference_mode():
            video = vae.decode(internals.denormalize_latents(vae, latents), return_dict=False)[0]
            check_finite(video, "the decoded frames (VAE output)")
            video = pipe.video_processor.postprocess_video(video, output_type="np")
        return to_uint8(video[0])

    # --- generating ----------------------------------------------------------------------------------
    def generate(self, params: Params | None = None, *, progress: bool | None = None,
                 on_step: Callable[[int, int], None] | None = None, accel: AccelLike = None, truncate: str = "warn",
                 probes: Any = None, **fields: Any) -> Video:
        """Generate one video.

        Fields the request leaves unset come from the model's native settings. A ``seed`` of -1 is drawn
        and recorded; the same model, request and environment give bit-identical frames.

        Args:
            params: a request (:class:`~wanlab.Params`) whose explicitly set fields are kept.
            progress: show a progress bar over the denoising steps (None: the pipeline's default).
            on_step: called as ``on_step(done, total)`` after each denoising step.
            accel: the acceleration setting for this call only (a :class:`wanlab.accel.Accel`, a preset
                name or a mapping; None: the pipeline's default); recorded and part of the run key.
            truncate: ``"warn"`` (once per text) when a prompt is longer than the model's
                ``max_sequence_length`` and so cut; ``"error"`` refuses it instead.
            probes: names, or names mapped to settings (:mod:`wanlab.probes`): what happens inside the
                model is recorded into ``video.probes``, without changing the frames.
            **fields: request fields (``prompt``, ``seed``, ``steps``, ``width``, ...).

        Returns:
            The :class:`~wanlab.Video`: frames, timings, and a record that says how to repeat it.

        Raises:
            ParamError: a request field that breaks its rule.
            TruncationError: with ``truncate="error"``, a prompt longer than the model reads.
            ProbeError: a probe name or setting that breaks its rule, or a word the prompt lacks.
            LoRAError: a LoRA file that is missing or cannot be loaded.
            GenerationError: NaN or inf in the latents, or every frame black.

        Example:
            >>> pipe.generate(prompt="a blue circle moving left slowly", seed=3, steps=20)  # doctest: +SKIP
            Video(17 frames, 64x64, 16 fps, seed=3, digest=...)
        """
        from .accel.setting import Accel

        job = Job(self.params(params, **fields).resolved(), Accel.coerce(self.accel if accel is None else accel),
                  on_step=on_step, truncate=truncate, probes=probes)
        self.advise(job.params, job.truncate)
        return self.run(job, progress=progress)

    def run(self, job: Job, *, progress: bool | None = False) -> Video:
        """Run one :class:`~wanlab.backend.Job` in this thread and return its video.

        Args:
            job: the resolved request with its acceleration, callbacks and probes.
            progress: show a progress bar over the denoising steps.

        Returns:
            The generated :class:`~wanlab.Video`.

        Raises:
            ParamError: ``job.truncate`` is not ``"warn"`` or ``"error"``.
            TruncationError: with ``truncate="error"``, a prompt longer than the model reads.
            GenerationError: NaN or inf in the latents, or every frame black.
        """
        from .accel.setting import Accel

        if job.truncate not in TRUNCATE:
            raise ParamError("truncate", f"one of {', '.join(TRUNCATE)}", job.truncate)
        p = job.params
        accel = Accel.coerce(self.accel if job.accel is None else job.accel)
        with self._lock:
            lengths = self._check_length(p, job.truncate)
            if job.on_start is not None:
                job.on_start()
            latents, info = self.denoise(p, accel=accel, on_step=job.on_step, progress=progress, probes=job.probes)
            t_decode = time.perf_counter()
            frames = self.decode(latents)
        if not frames.any():
            raise GenerationError(f"every frame is black (all {frames.size} values are 0): the model produced "
                                  "nothing to look at; not stored")
        timings = dict(info["timings"])
        setup = timings.pop("setup")
        timings["decode"] = time.perf_counter() - t_decode
        timings["total"] = timings["loras"] + timings["encode"] + setup + timings["denoise"] + timings["decode"]
        acc = info["accel"]
        record = {"params": p.to_dict(), "model": self.model_info, "settings": self.generation_settings(),
                  "accel": acc.record(), "loras": info["loras"], "environment": environment(self.device),
                  "created": now_iso(), **lengths}
        if acc.calibration_record() is not None:
            record["accel_calibration"] = acc.calibration_record()
        record["accel_stats"] = {**acc.stats(), "setup_s": setup}
        if job.probes:
            record["probes"] = job.probes
        return Video(frames, fps=WAN_FPS, params=p, model=self.model_info, timings=timings, record=record,
                     latents=latents.float().cpu().numpy(), probes=info["probes"])

    def start(self, job: Job) -> Future[Video]:
        """Run ``job`` on this pipeline's worker thread.

        It runs with the torch thread count of the thread that starts it (or ``job.threads``).

        Args:
            job: the resolved request with its acceleration, callbacks and probes.

        Returns:
            A Future that holds the job's :class:`~wanlab.Video` (or its error).
        """
        import torch

        threads = job.threads or torch.get_num_threads()
        self.advise(job.params, job.truncate)  # here, in the caller's thread, so warnings name its line
        with self._worker_lock:  # not the generation lock: starting a job never waits for one to end
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wanlab-pipeline")
            return self._worker.submit(self._run_with, threads, job)

    def _run_with(self, threads: int, job: Job) -> Video:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return self.run(job)

    def close(self) -> None:
        """Stop the task queue and the worker thread (what runs finishes); the model stays loaded."""
        super().close()
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Save the base pipeline, without LoRA adapters.

        Args:
            folder: where to write the diffusers folder.

        Returns:
            The folder, loadable again with ``wanlab.load(folder)``.

        Example:
            >>> folder = wanlab.load("tiny").save_pretrained("models/tiny-copy")  # doctest: +SKIP
        """
        target = Path(folder)
        with self._lock:
            self.loras.unload()
            self.diffusers.save_pretrained(str(target))
        return target
