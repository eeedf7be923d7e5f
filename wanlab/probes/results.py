"""What probes recorded in one run, as numpy arrays: :class:`Trajectory`, :class:`Attention`, :class:`Features`.

No torch: a stored run's probes are read without the model (:mod:`wanlab.probes.bundle` holds them
together and saves them). Each class's docstring gives its definition and the code or paper it follows.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ProbeError


def latent_frame_index(num_frames: int, temporal: int) -> np.ndarray:
    """For each frame, the latent frame it is decoded from.

    Wan's causal VAE: frame 0 alone, then groups of ``temporal`` frames.

    Args:
        num_frames: Frames of the video.
        temporal: The VAE's temporal factor.

    Returns:
        int array ``(num_frames,)``.

    Example:
        >>> latent_frame_index(9, 4).tolist()
        [0, 1, 1, 1, 1, 2, 2, 2, 2]
    """
    t = np.arange(num_frames)
    return np.where(t == 0, 0, (t - 1) // temporal + 1)


def upsample(grid: np.ndarray, num_frames: int, height: int, width: int, temporal: int) -> np.ndarray:
    """A per-latent-frame grid repeated to frame size (nearest neighbour).

    Every pixel takes the value of the latent cell it is decoded from.

    Args:
        grid: ``(T', h, w, ...)``.
        num_frames: Frames of the video.
        height: Frame height (a multiple of h).
        width: Frame width (a multiple of w).
        temporal: The VAE's temporal factor.

    Returns:
        ``(num_frames, height, width, ...)``.

    Example:
        >>> upsample(np.zeros((2, 2, 2)), 5, 16, 16, 4).shape
        (5, 16, 16)
    """
    grid = grid[latent_frame_index(num_frames, temporal)]
    ry, rx = height // grid.shape[1], width // grid.shape[2]
    return np.repeat(np.repeat(grid, ry, axis=1), rx, axis=2)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays (inf when equal).

    Args:
        a: uint8 array.
        b: uint8 array of the same shape.

    Returns:
        ``10 log10(255^2 / MSE)``.

    Example:
        >>> psnr(np.zeros(4, np.uint8), np.zeros(4, np.uint8))
        inf
    """
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


class Trajectory:
    """The model's clean-video prediction at every denoising step.

    At each denoising step ``s`` the model's prediction of the clean latents, for flow matching
    ``x0_s = x_s - sigma_s * v_s`` with ``v_s`` the guided velocity the scheduler is given (as
    ``UniPCMultistepScheduler.convert_model_output`` computes it for ``prediction_type="flow_prediction"``;
    the "predicted x0" previews of FlowMo, Shaulov et al. 2025, and DiffTrack). Previews project
    latents to RGB with a linear map per latent channel (``rgb = latent @ factors + bias``, as
    ComfyUI's ``latent_rgb_factors`` previews), upsampled to frame size: latent frame 0 is frame 0,
    latent frame ``k >= 1`` covers frames ``(k-1)*f+1 .. k*f`` (Wan's causal VAE, ``f`` its temporal factor).

    Args:
        x0: float ``(S, C, T', H', W')``: the prediction per step.
        factors: ``(C, 3)``: the latent-to-RGB projection.
        bias: ``(3,)``: its bias.
        frames: ``(T, H, W)`` of the video.
        temporal: The VAE's temporal factor.
        projection: Where the projection came from (for the record).
        settings: The probe's settings as recorded.

    Example:
        >>> import numpy as np
        >>> x0 = np.random.default_rng(0).standard_normal((3, 4, 2, 2, 2)).astype(np.float32)  # 3 steps
        >>> traj = Trajectory(x0, factors=np.full((4, 3), 0.1), bias=np.zeros(3), frames=(5, 16, 16), temporal=4)
        >>> traj.steps, traj.preview(-1).shape, float(traj.distance[-1])
        (3, (5, 16, 16, 3), 0.0)
        >>> video.probes["trajectory"].preview(-1).shape  # doctest: +SKIP
        (17, 64, 64, 3)
    """

    name = "trajectory"

    def __init__(self, x0: np.ndarray, *, factors: np.ndarray, bias: np.ndarray, frames: tuple[int, int, int],
                 temporal: int, projection: str = "", settings: Mapping[str, Any] | None = None) -> None:
        self.x0 = np.asarray(x0)
        self.factors = np.asarray(factors, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.frames = tuple(int(v) for v in frames)
        self.temporal = int(temporal)
        self.projection = projection
        self.settings = dict(settings or {})

    def __repr__(self) -> str:
        return f"Trajectory({self.steps} steps, latents {tuple(self.x0.shape[1:])}, projection={self.projection!r})"

    @property
    def steps(self) -> int:
        """The number of recorded denoising steps S."""
        return int(self.x0.shape[0])

    def _index(self, step: int) -> int:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not -self.steps <= step < self.steps:
            raise ProbeError.invalid("step", f"an index from {-self.steps} to {self.steps - 1} "
                                     f"(the run's {self.steps} steps)", step)
        return int(step) % self.steps

    def latents(self, step: int) -> np.ndarray:
        """The predicted clean latents at ``step`` (what the VAE decodes).

        Args:
            step: A step index (negative counts from the end).

        Returns:
            float32 ``(1, C, T', H', W')``.

        Raises:
            ProbeError: A step outside the run's steps.
        """
        return self.x0[self._index(step)][None].astype(np.float32)

    def preview(self, step: int, *, decoder: Any = None) -> np.ndarray:
        """The prediction at ``step`` as uint8 frames ``(T, H, W, 3)`` aligned with the video's frames.

        Args:
            step: a step index (0 is the first denoising step; negative counts from the end).
            decoder: None for the cheap latent-to-RGB projection, or a :class:`wanlab.Pipeline` (anything
                with ``decode(latents) -> frames``) to decode with the model's VAE: at the last step
                that gives the video's frames bit for bit (with ``dtype="float32"``).

        Returns:
            uint8 ``(T, H, W, 3)``.

        Raises:
            ProbeError: a step outside the run's steps.

        Example:
            >>> video.probes["trajectory"].preview(0, decoder=pipe)  # doctest: +SKIP
        """
        if decoder is not None:
            return decoder.decode(self.latents(step))
        x = self.x0[self._index(step)].astype(np.float32)  # (C, T', H', W')
        rgb = np.einsum("cthw,ck->thwk", x, self.factors) + self.bias
        small = np.clip(np.round((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)
        t, h, w = self.frames
        return upsample(small, t, h, w, self.temporal)

    @property
    def distance(self) -> np.ndarray:
        """Distance of each step's prediction to the last: ``||x0_s - x0_last|| / ||x0_last||``, float ``(S,)``.

        Relative L2; 0 at the last step.
        """
        x = self.x0.reshape(self.steps, -1).astype(np.float64)
        ref = x[-1]
        return (np.linalg.norm(x - ref, axis=1) / max(float(np.linalg.norm(ref)), 1e-12)).astype(np.float32)

    @property
    def motion(self) -> np.ndarray:
        """Each step's preview motion, float ``(S,)``.

        The mean absolute difference between consecutive preview frames (0..255 scale), taken at
        latent-frame resolution (one value per latent frame).
        """
        out = []
        for s in range(self.steps):
            x = self.x0[s].astype(np.float32)
            rgb = np.clip((np.einsum("cthw,ck->thwk", x, self.factors) + self.bias + 1.0) * 127.5, 0, 255)
            out.append(float(np.abs(np.diff(rgb, axis=0)).mean()) if rgb.shape[0] > 1 else 0.0)
        return np.asarray(out, np.float32)

    def psnr_to_last(self) -> np.ndarray:
        """PSNR of each step's preview against the last step's.

        Returns:
            float ``(S,)`` in dB (inf at the last).
        """
        last = self.preview(-1)
        return np.asarray([psnr(self.preview(s), last) for s in range(self.steps)], np.float64)

    def decided_step(self, psnr_db: float = 30.0) -> int:
        """The first step from which every preview stays within ``psnr_db`` of the last step's preview.

        When layout and motion are decided (FlowMo's observation that coarse structure settles early).

        Args:
            psnr_db: The PSNR (dB) a preview must reach against the last one.

        Returns:
            The step index.

        Raises:
            ProbeError: ``psnr_db`` not a positive number.
        """
        if isinstance(psnr_db, bool) or not isinstance(psnr_db, (int, float)) or not psnr_db > 0:
            raise ProbeError.invalid("psnr_db", "a positive number of decibels", psnr_db)
        ok = self.psnr_to_last() >= psnr_db
        step = self.steps - 1
        while step > 0 and ok[step - 1]:
            step -= 1
        return int(step)

    def summary(self) -> dict[str, float]:
        """Scalar summaries for tables.

        Returns:
            ``decided_step`` at 30 dB and ``decided_fraction`` (of the steps).
        """
        decided = self.decided_step()
        return {"decided_step": float(decided), "decided_fraction": decided / max(self.steps - 1, 1)}

    def arrays(self) -> dict[str, Any]:
        """The arrays :class:`~wanlab.probes.Probes` saves.

        Returns:
            ``x0``, ``factors``, ``bias`` and ``meta`` (JSON-able).
        """
        meta = {"frames": list(self.frames), "temporal": self.temporal, "projection": self.projection,
                "settings": self.settings}
        return {"x0": self.x0, "factors": self.factors, "bias": self.bias, "meta": meta}

    @classmethod
    def from_arrays(cls, a: Mapping[str, Any]) -> Trajectory:
        """Inverse of :meth:`arrays`.

        Args:
            a: The arrays and ``meta``.

        Returns:
            The Trajectory.
        """
        m = a["meta"]
        return cls(a["x0"], factors=a["factors"], bias=a["bias"], frames=tuple(m["frames"]), temporal=m["temporal"],
                   projection=m.get("projection", ""), settings=m.get("settings"))


class Attention:
    """Cross-attention maps from video tokens to the prompt's words.

    Cross-attention probabilities ``softmax(q k^T / sqrt(d))`` from each video token to each text
    token, averaged over heads, summed over a word's tokenizer pieces, averaged over the chosen
    blocks and steps (cross-attention maps as in Prompt-to-Prompt, Hertz et al. 2022, and DiTCtrl).

    Args:
        per_step: float ``(S_chosen, N, W)`` (averaged over the chosen blocks); ``N`` video tokens on
            the ``grid``, ``W`` words.
        per_block: ``(B_chosen, N, W)`` (averaged over the chosen steps).
        words: The recorded words.
        steps: The recorded step indices.
        blocks: The recorded block indices.
        grid: ``(T', h, w)`` of the video tokens.
        frames: ``(T, H, W)`` of the video.
        temporal: The VAE's temporal factor.
        prompt_words: All words of the prompt (default: ``words``).
        settings: The probe's settings as recorded.

    Example:
        >>> import numpy as np
        >>> att = Attention(np.ones((1, 8, 2)), np.ones((1, 8, 2)), words=["red", "square"], steps=[0], blocks=[3],
        ...                 grid=(2, 2, 2), frames=(5, 16, 16), temporal=4)
        >>> att.map("square").shape
        (5, 16, 16)
        >>> video.probes["attention"].map("square").shape  # doctest: +SKIP
        (17, 64, 64)
    """

    name = "attention"

    def __init__(self, per_step: np.ndarray, per_block: np.ndarray, *, words: list[str], steps: list[int],
                 blocks: list[int], grid: tuple[int, int, int], frames: tuple[int, int, int], temporal: int,
                 prompt_words: list[str] | None = None, settings: Mapping[str, Any] | None = None) -> None:
        self.per_step = np.asarray(per_step, np.float32)
        self.per_block = np.asarray(per_block, np.float32)
        self.words = list(words)
        self.steps = [int(s) for s in steps]
        self.blocks = [int(b) for b in blocks]
        self.grid = tuple(int(v) for v in grid)
        self.frames = tuple(int(v) for v in frames)
        self.temporal = int(temporal)
        self.prompt_words = list(prompt_words or words)
        self.settings = dict(settings or {})

    def __repr__(self) -> str:
        return f"Attention(words={self.words}, {len(self.steps)} steps, {len(self.blocks)} blocks)"

    def _word(self, word: str) -> int:
        key = word.strip().lower()
        for i, w in enumerate(self.words):
            if w.lower() == key:
                return i
        if key in (w.lower() for w in self.prompt_words):
            raise ProbeError(f"word {word!r} was not recorded: this run recorded {', '.join(self.words)} "
                             "(probes.attention.words)", "word")
        raise ProbeError(f"the prompt has no word {word!r}; its words are: {', '.join(self.prompt_words)}", "word")

    def _pick(self, values: list[int], value: int, what: str) -> int:
        if value not in values:
            raise ProbeError.invalid(what, f"one of the recorded {what}s {values} (probes.attention.{what}s)", value)
        return values.index(value)

    def tokens(self, word: str, *, step: int | None = None, block: int | None = None) -> np.ndarray:
        """The attention each video token pays to ``word`` (not normalised).

        Args:
            word: A recorded word (case does not matter).
            step: One recorded step instead of their mean.
            block: One recorded block instead of their mean (both at once only for a run recorded
                with one block or one step).

        Returns:
            float ``(N,)``.

        Raises:
            ProbeError: A word the prompt lacks or that was not recorded, or a step or block that was not.
        """
        w = self._word(word)
        if step is not None and block is not None:
            if len(self.blocks) == 1 and block in self.blocks:
                block = None
            elif len(self.steps) == 1 and step in self.steps:
                step = None
            else:
                raise ProbeError("a map for one step and one block at once needs a run recorded with that one "
                                 "block (probes.attention.blocks) or that one step (probes.attention.steps)", "block")
        if step is not None:
            return self.per_step[self._pick(self.steps, step, "step"), :, w]
        if block is not None:
            return self.per_block[self._pick(self.blocks, block, "block"), :, w]
        return self.per_step[:, :, w].mean(axis=0)

    def map(self, word: str, *, step: int | None = None, block: int | None = None) -> np.ndarray:
        """Where the video attends to ``word``, aligned with the frames.

        Args:
            word: A recorded word (case does not matter).
            step: One recorded step instead of their mean.
            block: One recorded block instead of their mean.

        Returns:
            float ``(T, H, W)`` in [0, 1] (divided by its maximum; averaged over the recorded steps and
            blocks unless one is chosen).

        Raises:
            ProbeError: a word the prompt lacks (the message names the prompt's words), or a step or
                block that was not recorded.
        """
        values = self.tokens(word, step=step, block=block).reshape(self.grid)
        top = float(values.max())
        values = values / top if top > 0 else values
        t, h, w = self.frames
        return upsample(values.astype(np.float32), t, h, w, self.temporal)

    def arrays(self) -> dict[str, Any]:
        """The arrays :class:`~wanlab.probes.Probes` saves.

        Returns:
            ``per_step``, ``per_block`` and ``meta`` (JSON-able).
        """
        meta = {"words": self.words, "steps": self.steps, "blocks": self.blocks, "grid": list(self.grid),
                "frames": list(self.frames), "temporal": self.temporal, "prompt_words": self.prompt_words,
                "settings": self.settings}
        return {"per_step": self.per_step, "per_block": self.per_block, "meta": meta}

    @classmethod
    def from_arrays(cls, a: Mapping[str, Any]) -> Attention:
        """Inverse of :meth:`arrays`.

        Args:
            a: The arrays and ``meta``.

        Returns:
            The Attention.
        """
        m = a["meta"]
        return cls(a["per_step"], a["per_block"], words=m["words"], steps=m["steps"], blocks=m["blocks"],
                   grid=tuple(m["grid"]), frames=tuple(m["frames"]), temporal=m["temporal"],
                   prompt_words=m.get("prompt_words"), settings=m.get("settings"))


class Features:
    """Each block's step-to-step output change.

    Per step and block, the relative L1 change of the block's output from the previous step,
    ``mean|h_s - h_{s-1}| / mean|h_{s-1}|``, on the conditional branch (the quantity diffusers'
    first-block cache thresholds, ``FirstBlockCacheHook``; TeaCache, Liu et al. 2024, and MagCache,
    Ma et al. 2025, threshold relatives of it). :attr:`skipped` marks block calls whose attention
    and feed-forward did not run (an acceleration setting served them from its cache).

    Args:
        change: float ``(S-1, B_chosen)`` (NaN where a block was not called).
        units: int ``(S, branches, blocks)``, how many of a block call's attention and feed-forward
            computations ran (3: all; 0: the call was served from an acceleration setting's cache).
        blocks: The block indices whose change was recorded.
        input_change: float ``(S-1,)``, the relative L1 change of the first block's timestep-modulated
            input (``norm1(h) * (1 + scale) + shift``, the input of its self-attention), the indicator
            TeaCache (Liu et al. 2024) thresholds.
        settings: The probe's settings as recorded.

    Example:
        >>> import numpy as np
        >>> features = Features(np.array([[0.1, 0.2]]), np.full((2, 1, 2), 3), blocks=[0, 1])
        >>> round(features.summary()["mean_change"], 2), features.skipped_calls
        (0.15, 0)
        >>> video.probes["features"].change.shape  # doctest: +SKIP
        (24, 4)
    """

    name = "features"

    def __init__(self, change: np.ndarray, units: np.ndarray, *, blocks: list[int],
                 input_change: np.ndarray | None = None, settings: Mapping[str, Any] | None = None) -> None:
        self.change = np.asarray(change, np.float32)
        self.input_change = (np.full(self.change.shape[0], np.nan, np.float32) if input_change is None
                             else np.asarray(input_change, np.float32))
        self.units = np.asarray(units, np.int8)
        self.blocks = [int(b) for b in blocks]
        self.settings = dict(settings or {})

    def __repr__(self) -> str:
        return f"Features({self.units.shape[0]} steps, blocks {self.blocks})"

    @property
    def skipped(self) -> np.ndarray:
        """Block calls whose attention and feed-forward all did not run, bool ``(S, branches, B_chosen)``."""
        return self.units[:, :, self.blocks] == 0

    @property
    def skipped_calls(self) -> int:
        """Transformer calls whose blocks after the first all skipped their work.

        What an acceleration setting's own count (``record["accel_stats"]["calls_skipped"]``) says it
        served from cache.
        """
        later = self.units[:, :, 1:] if self.units.shape[2] > 1 else self.units
        return int((later == 0).all(axis=2).sum())

    def summary(self) -> dict[str, float]:
        """Scalar summaries for tables.

        Returns:
            ``mean_change`` over steps and blocks, and ``first_block_change`` (NaN when none recorded).
        """
        if not self.change.size or np.isnan(self.change).all():
            return {"mean_change": float("nan"), "first_block_change": float("nan")}
        return {"mean_change": float(np.nanmean(self.change)),
                "first_block_change": float(np.nanmean(self.change[:, 0]))}

    def arrays(self) -> dict[str, Any]:
        """The arrays :class:`~wanlab.probes.Probes` saves.

        Returns:
            ``change``, ``units``, ``input_change`` and ``meta`` (JSON-able).
        """
        return {"change": self.change, "units": self.units, "input_change": self.input_change,
                "meta": {"blocks": self.blocks, "settings": self.settings}}

    @classmethod
    def from_arrays(cls, a: Mapping[str, Any]) -> Features:
        """Inverse of :meth:`arrays`.

        Args:
            a: The arrays and ``meta``.

        Returns:
            The Features.
        """
        m = a["meta"]
        return cls(a["change"], a["units"], blocks=m["blocks"], input_change=a.get("input_change"),
                   settings=m.get("settings"))
