"""Recording probes during one denoising call with observing hooks only.

:func:`recording` installs the hooks; the :class:`Recorder` holds what they gather.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import ProbeError
from ..models import internals
from .bundle import Probes
from .results import Attention, Features, Trajectory
from .spec import check_against
from .words import prompt_words

#: Submodules of a block whose calls mean the block computed (wanlab.accel.apply counts the same).
WORK_UNITS = ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2")


class Recorder:
    """What the hooks of one call gather; :meth:`results` turns it into :class:`Probes`.

    Args:
        pipeline: The :class:`wanlab.Pipeline` running the call.
        params: The call's resolved request.
        probes: Canonical probe settings (:func:`wanlab.probes.spec.normalize`).

    Raises:
        ProbeError: Steps or blocks outside the request's or the model's, or a word the prompt lacks.

    Example:
        >>> with recording(pipe, params, {"trajectory": {"dtype": "float32", "max_mb": 64.0}}) as rec:  # doctest: +SKIP
        ...     ...
        >>> rec.results(pipe)  # doctest: +SKIP
        Probes(trajectory)
    """

    def __init__(self, pipeline: Any, params: Any, probes: Mapping[str, Mapping[str, Any]]) -> None:
        dpipe = pipeline.diffusers
        self.pipeline = pipeline
        self.params = params
        self.probes = {name: dict(settings) for name, settings in probes.items()}
        self.transformer = dpipe.transformer
        self.blocks = internals.transformer_blocks(self.transformer)
        check_against(self.probes, steps=params.steps, blocks=len(self.blocks))
        self.branches = 2 if params.guidance_scale > 1.0 else 1
        self.temporal = int(dpipe.vae_scale_factor_temporal)
        self.step = 0  # scheduler steps taken so far: the index of the step whose transformer calls run now
        self.branch = -1  # transformer calls made in the current step, minus one
        self.handles: list[Any] = []
        self.x0: list[Any] = []
        self.latent_shape: tuple[int, ...] | None = None
        if "features" in self.probes:
            chosen = self.probes["features"]["blocks"]
            self.f_blocks = list(range(len(self.blocks))) if chosen is None else list(chosen)
            self.f_prev: dict[int, Any] = {}
            self.f_change = np.full((max(params.steps - 1, 0), len(self.f_blocks)), np.nan, np.float32)
            self.f_units = np.zeros((params.steps, self.branches, len(self.blocks)), np.int8)
            self.f_input_prev: Any = None
            self.f_input_change = np.full(max(params.steps - 1, 0), np.nan, np.float32)
        if "attention" in self.probes:
            settings = self.probes["attention"]
            words = prompt_words(dpipe.tokenizer, params.prompt, pipeline.max_sequence_length)
            self.prompt_words = list(words)
            wanted = settings["words"] or self.prompt_words
            for word in wanted:
                if word.lower() not in words:
                    raise ProbeError(f"the prompt has no word {word!r} (probes.attention.words); its words are: "
                                     f"{', '.join(self.prompt_words)}", "probes.attention.words")
            self.a_words = [w.lower() for w in wanted]
            self.a_tokens = [words[w] for w in self.a_words]
            self.a_steps = list(range(params.steps)) if settings["steps"] is None else list(settings["steps"])
            self.a_blocks = list(range(len(self.blocks))) if settings["blocks"] is None else list(settings["blocks"])
            self.a_chunk = int(settings["chunk"])
            self.a_per_step: Any = None
            self.a_per_block: Any = None
            # block calls that ran per recorded step and per recorded block: a cache that skips a block's
            # call skips its cross-attention too, and averages are over the calls that ran
            self.a_count_step = np.zeros(len(self.a_steps), np.int64)
            self.a_count_block = np.zeros(len(self.a_blocks), np.int64)

    # --- installing ---------------------------------------------------------------------------------
    def install(self, stack: contextlib.ExitStack) -> None:
        """Install the hooks; ``stack`` removes them on exit (also on errors).

        Args:
            stack: The ExitStack of the call.
        """
        stack.enter_context(internals.wrap_scheduler_step(self.pipeline.diffusers.scheduler, self._on_step))
        self.handles.append(self.transformer.register_forward_pre_hook(self._on_call))
        if "features" in self.probes:
            for index, block in enumerate(self.blocks):
                if index in self.f_blocks:
                    self.handles.append(block.register_forward_hook(self._block_end(index)))
                for unit in WORK_UNITS:
                    self.handles.append(block.get_submodule(unit).register_forward_hook(self._unit_ran(index)))
            first = internals.self_attention(self.blocks[0])
            self.handles.append(first.register_forward_pre_hook(self._modulated_input, with_kwargs=True))
        if "attention" in self.probes:
            for index in self.a_blocks:
                attn = internals.cross_attention(self.blocks[index])
                self.handles.append(attn.register_forward_pre_hook(self._attention(index), with_kwargs=True))
        stack.callback(self.remove)

    def remove(self) -> None:
        """Remove every hook installed (the scheduler's wrapper goes with the stack)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []

    # --- hooks --------------------------------------------------------------------------------------
    def _on_call(self, _module: Any, _args: Any) -> None:
        self.branch += 1

    def _on_step(self, model_output: Any, _timestep: Any, sample: Any, sigma: Any) -> None:
        if "trajectory" in self.probes:
            x0 = sample - sigma * model_output  # UniPC's convert_model_output for flow prediction
            if self.latent_shape is None:
                self._check_size(tuple(x0.shape))
            dtype = np.float16 if self.probes["trajectory"]["dtype"] == "float16" else np.float32
            self.x0.append(x0[0].detach().float().cpu().numpy().astype(dtype, copy=True))
        if self.latent_shape is None:
            self.latent_shape = tuple(sample.shape)
        self.step += 1
        self.branch = -1

    def _check_size(self, shape: tuple[int, ...]) -> None:
        settings = self.probes["trajectory"]
        per = int(np.prod(shape[1:])) * (2 if settings["dtype"] == "float16" else 4)
        total_mb = per * self.params.steps / 2 ** 20
        if total_mb > settings["max_mb"]:
            raise ProbeError(f"probes.trajectory: {self.params.steps} steps of latents {shape[1:]} take "
                             f"{total_mb:.1f} MB, over max_mb={settings['max_mb']:g}; raise "
                             "probes.trajectory.max_mb or use dtype='float16'", "probes.trajectory.max_mb")

    def _unit_ran(self, index: int) -> Any:
        def hook(_module: Any, _args: Any, _output: Any) -> None:
            if 0 <= self.branch < self.branches and self.step < self.params.steps:
                self.f_units[self.step, self.branch, index] += 1
        return hook

    def _block_end(self, index: int) -> Any:
        column = self.f_blocks.index(index)

        def hook(_module: Any, _args: Any, output: Any) -> None:
            if self.branch != 0:
                return
            out = output[0] if isinstance(output, tuple) else output
            prev = self.f_prev.get(index)
            if prev is not None and self.step >= 1:
                prev_f = prev.float()
                change = (out.float() - prev_f).abs().mean() / prev_f.abs().mean()
                self.f_change[self.step - 1, column] = float(change)
            self.f_prev[index] = out.detach().clone()
        return hook

    def _modulated_input(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """The first block's timestep-modulated input, conditional branch: TeaCache's indicator."""
        if self.branch != 0:
            return
        current = args[0] if args else kwargs["hidden_states"]
        prev = self.f_input_prev
        if prev is not None and self.step >= 1:
            prev_f = prev.float()
            self.f_input_change[self.step - 1] = float((current.float() - prev_f).abs().mean() / prev_f.abs().mean())
        self.f_input_prev = current.detach().clone()

    def _attention(self, index: int) -> Any:
        import torch

        row_b = self.a_blocks.index(index)

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if self.branch != 0 or self.step not in self.a_steps:
                return
            hidden = args[0] if args else kwargs["hidden_states"]
            context = args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states")
            query, key = internals.cross_attention_qk(module, hidden, context)
            q, k = query[0], key[0]  # (N, heads, d), (L, heads, d)
            n, _, dim = q.shape
            if self.a_per_step is None:
                self.a_per_step = torch.zeros((len(self.a_steps), n, len(self.a_words)), dtype=torch.float32,
                                              device=q.device)
                self.a_per_block = torch.zeros((len(self.a_blocks), n, len(self.a_words)), dtype=torch.float32,
                                               device=q.device)
            kt = k.float().permute(1, 2, 0)  # (heads, d, L)
            scale = dim ** -0.5
            row_s = self.a_steps.index(self.step)
            self.a_count_step[row_s] += 1
            self.a_count_block[row_b] += 1
            for start in range(0, n, self.a_chunk):
                qc = q[start:start + self.a_chunk].float().transpose(0, 1)  # (heads, n_c, d)
                probs = torch.softmax(torch.matmul(qc, kt) * scale, dim=-1).mean(dim=0)  # (n_c, L)
                words = torch.stack([probs[:, idx].sum(dim=-1) for idx in self.a_tokens], dim=-1)
                self.a_per_step[row_s, start:start + self.a_chunk] += words
                self.a_per_block[row_b, start:start + self.a_chunk] += words
        return hook

    # --- results ------------------------------------------------------------------------------------
    def results(self, pipeline: Any) -> Probes:
        """The recorded probes of the finished call, as numpy results.

        Args:
            pipeline: The pipeline (for the trajectory's latent-to-RGB projection).

        Returns:
            The :class:`Probes`.
        """
        from .projection import projection_for

        p = self.params
        frames = (p.num_frames, p.height, p.width)
        out: dict[str, Any] = {}
        if "trajectory" in self.probes:
            factors, bias, name = projection_for(pipeline)
            out["trajectory"] = Trajectory(np.stack(self.x0), factors=factors, bias=bias, frames=frames,
                                           temporal=self.temporal, projection=name,
                                           settings=self.probes["trajectory"])
        if "attention" in self.probes:
            assert self.latent_shape is not None and self.a_per_step is not None
            pt, ph, pw = self.transformer.config.patch_size
            _, _, t, h, w = self.latent_shape
            per_step = self.a_per_step.cpu().numpy() / np.maximum(self.a_count_step, 1)[:, None, None]
            per_block = self.a_per_block.cpu().numpy() / np.maximum(self.a_count_block, 1)[:, None, None]
            out["attention"] = Attention(
                per_step.astype(np.float32), per_block.astype(np.float32),
                words=self.a_words, steps=self.a_steps, blocks=self.a_blocks, grid=(t // pt, h // ph, w // pw),
                frames=frames, temporal=self.temporal, prompt_words=self.prompt_words,
                settings=self.probes["attention"])
        if "features" in self.probes:
            out["features"] = Features(self.f_change, self.f_units, blocks=self.f_blocks,
                                       input_change=self.f_input_change, settings=self.probes["features"])
        return Probes(out)


@contextlib.contextmanager
def recording(pipeline: Any, params: Any, probes: Mapping[str, Mapping[str, Any]] | None) -> Iterator[Recorder | None]:
    """Record probes during one denoising call.

    Installs, for one call, a wrapper around the scheduler's ``step`` (the guided prediction, hence
    the trajectory, and the step count) and torch forward hooks on the transformer, its blocks and
    their cross-attention (through :mod:`wanlab.models.internals`), and removes them all on exit,
    also on errors. The hooks never change a tensor the model uses: they read inputs and outputs
    and compute on copies (attention probabilities are computed beside the model's own attention,
    in chunks of video tokens, so the extra memory is ``chunk x text tokens x heads``, never video
    tokens squared), and draw no random numbers. The frames are therefore bit-identical to a run
    without probes (tests/test_probes_exact.py checks the digests).

    Args:
        pipeline: A :class:`wanlab.Pipeline` whose scheduler is the call's.
        params: The call's resolved request.
        probes: Canonical settings (:func:`wanlab.probes.spec.normalize`), or None.

    Yields:
        The :class:`Recorder`, or None when there is nothing to record.

    Raises:
        ProbeError: steps or blocks outside the request's or the model's, or a word the prompt lacks.

    Example:
        >>> with recording(pipe, params, normalize(["features"])) as rec:  # doctest: +SKIP
        ...     pipe.diffusers(...)
    """
    if not probes:
        yield None
        return
    recorder = Recorder(pipeline, params, probes)
    with contextlib.ExitStack() as stack:
        recorder.install(stack)
        yield recorder
