"""Applying an acceleration setting around one denoising call, and undoing it.

Holds :func:`applied` (the context the pipeline runs its denoising loop in; what wanlab adds on top of
diffusers' mechanisms is listed there), :class:`Applied` (what it did, for the run's record) and
:class:`CallCounter` (the work a cache skipped).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ParamError
from ..models import internals
from .methods import BuildContext
from .setting import CPU_ATTENTION_BACKENDS, Accel

if TYPE_CHECKING:  # pragma: no cover
    from ..params import Params

#: One "unit" of block work: the output projection of each attention and of the feed-forward layer.
WORK_UNITS = ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2")


class CallCounter:
    """Counts, during one generation, the transformer calls and the attention/feed-forward computations that ran.

    A computation is counted at its output projection (:data:`WORK_UNITS`: attn1, attn2 and ffn in
    every block), through torch forward hooks that change no tensor.

    Args:
        transformer: A diffusers ``WanTransformer3DModel``; the hooks are registered on construction.

    Attributes:
        blocks: The transformer's block count.
        per_call: Per transformer call, the units run in each block.

    Example:
        >>> counter = CallCounter(pipe.diffusers.transformer)  # doctest: +SKIP
        >>> pipe.generate(prompt="a red square moving right quickly", steps=4)  # doctest: +SKIP
        >>> counter.remove(); counter.stats()["calls"]  # doctest: +SKIP
        8
    """

    def __init__(self, transformer: Any) -> None:
        self.blocks = len(transformer.blocks)
        self.per_call: list[list[int]] = []  # per transformer call: units run in each block
        self._handles = [transformer.register_forward_pre_hook(self._on_call)]
        for index, block in enumerate(transformer.blocks):
            for unit in WORK_UNITS:
                try:
                    module = block.get_submodule(unit)
                except AttributeError:
                    continue
                self._handles.append(module.register_forward_hook(self._unit_hook(index)))

    def _on_call(self, _module: Any, _args: Any) -> None:
        self.per_call.append([0] * self.blocks)

    def _unit_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, _output: Any) -> None:
            if self.per_call:
                self.per_call[-1][index] += 1
        return hook

    def remove(self) -> None:
        """Remove the hooks (the counts stay)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def stats(self) -> dict[str, Any]:
        """The counts, as the record's ``"accel_stats"`` holds them.

        Returns:
            ``calls`` (transformer calls made: steps x branches), ``calls_full`` (every block computed),
            ``calls_skipped`` (the block stack served from the cache: nothing after the first block ran),
            ``calls_partial`` (the rest) and ``block_work`` (fraction of attention/FFN computations run;
            None when no call was made).
        """
        per_unit = len(WORK_UNITS)
        full = skipped = units = 0
        for counts in self.per_call:
            units += sum(counts)
            if all(c >= per_unit for c in counts):
                full += 1
            elif sum(counts[1:] if self.blocks > 1 else counts) == 0:
                skipped += 1
        calls = len(self.per_call)
        expected = calls * self.blocks * per_unit
        return {"calls": calls, "calls_full": full, "calls_skipped": skipped,
                "calls_partial": calls - full - skipped,
                "block_work": (units / expected) if expected else None}


class Applied:
    """What :func:`applied` did for one call: the setting, MagCache's calibration and the counts.

    Args:
        accel: The setting applied.

    Attributes:
        accel: The setting.
        calibration: What :func:`wanlab.accel.calibrate` returned, for MagCache with ``mag_ratios="auto"``;
            else ``None``.
        counter: The :class:`CallCounter`, or ``None`` under ``torch.compile``.
        hooked: Names of the modules the cache hooked.

    Example:
        >>> with applied(pipe, "fbc", params) as state:  # doctest: +SKIP
        ...     latents = pipe.diffusers(...)
        >>> state.record()["cache"], state.stats()["calls_skipped"]  # doctest: +SKIP
    """

    def __init__(self, accel: Accel) -> None:
        self.accel = accel
        self.calibration: dict[str, Any] | None = None
        self.counter: CallCounter | None = None
        self.hooked: list[str] = []

    def record(self) -> dict[str, Any]:
        """The record's ``"accel"`` entry: the setting's canonical form (part of the run key).

        Returns:
            ``Accel.to_dict()``.
        """
        return self.accel.to_dict()

    def calibration_record(self) -> dict[str, Any] | None:
        """The record's ``"accel_calibration"`` entry for MagCache with calibrated ratios.

        Returns:
            ``key``, ``sha256``, ``ratios``, ``source``, ``prompt`` and ``seed`` of the calibration, or
            ``None`` when there was none.
        """
        c = self.calibration
        if c is None:
            return None
        return {"key": c["key"], "sha256": c["sha256"], "ratios": list(c["ratios"]), "source": c["source"],
                "prompt": c["prompt"], "seed": c["seed"]}

    def stats(self) -> dict[str, Any]:
        """The record's ``"accel_stats"``: :meth:`CallCounter.stats` (None values under compile).

        Returns:
            The counts, each ``None`` when the call ran under ``torch.compile`` (hooks are not counted there).
        """
        if self.counter is None:
            return {"calls": None, "calls_full": None, "calls_skipped": None, "calls_partial": None,
                    "block_work": None}
        return self.counter.stats()


@contextlib.contextmanager
def applied(pipe: Any, accel: Accel | str | Mapping[str, Any] | None, params: Params) -> Iterator[Applied]:
    """Apply ``accel`` to ``pipe``'s transformer for one denoising call of ``params``, and undo it.

    Order: MagCache calibration (an exact run, when needed), attention backend, cache hook,
    compilation, work counters; undone in reverse order on exit, also when the call raises, so the
    next exact call gives output bit-identical to one made before. What wanlab adds on top of
    diffusers' mechanisms, each measured on the tiny model:

    - TaylorSeer's default module patterns match no module of Wan's transformer (it silently does
      nothing); wanlab targets ``blocks.N.attn1/attn2/ffn`` and refuses a setting that hooks nothing.
    - PAB keeps one cache per guidance branch (:mod:`wanlab.accel.pab`).
    - Setting an attention backend in diffusers changes the process-wide default and
      ``reset_attention_backend()`` does not restore it; wanlab restores both.
    - ``disable_cache()`` leaves instance ``forward`` attributes and empty hook registries that make
      ``torch.compile`` recompile every call; wanlab removes them.
    - Work skipped is counted per call (:class:`CallCounter`): transformer calls made, calls served
      from the cache, and the fraction of attention/feed-forward computations that ran
      (``record["accel_stats"]``; not counted under ``torch.compile``).

    Args:
        pipe: A :class:`wanlab.Pipeline` (its ``diffusers`` pipeline, ``device`` and, for MagCache's
            calibration, ``identity``, ``loras`` and ``denoise``).
        accel: The setting, or anything :meth:`Accel.coerce` takes (a preset name, a mapping, ``None``).
        params: The request about to run (its steps size the cache; MagCache calibrates at its shape).

    Yields:
        An :class:`Applied`, for the run's record.

    Raises:
        wanlab.ParamError: The setting is invalid, its cache hooks no module of this transformer, its
            attention backend cannot run on this device or here, or ``compile="blocks"`` on a model
            without repeated blocks.
        RuntimeError: A cache hook was enabled on the transformer outside wanlab.

    Example:
        >>> params = pipe.params(prompt="a red square moving right quickly")  # doctest: +SKIP
        >>> with applied(pipe, "fbc", params) as state:  # doctest: +SKIP
        ...     latents = pipe.diffusers(...)
        >>> state.stats()["calls_skipped"]  # doctest: +SKIP
    """
    from .magcache import calibrate
    from .pab import per_branch

    accel = Accel.coerce(accel)
    dpipe = pipe.diffusers
    transformer = dpipe.transformer
    state = Applied(accel)
    if getattr(transformer, "is_cache_enabled", False):
        raise RuntimeError(
            "a cache hook is already enabled on the transformer, outside wanlab: call "
            "pipe.diffusers.transformer.disable_cache() and pass the setting as accel= instead")
    with contextlib.ExitStack() as stack:
        if accel.cache == "mag" and accel.cache_params["mag_ratios"] == "auto":
            state.calibration = calibrate(pipe, params, accel)
        if accel.attention_backend is not None:
            stack.enter_context(_attention_backend(transformer, accel.attention_backend, pipe.device))
        if accel.cache != "none":
            context = BuildContext(steps=params.steps, transformer_dtype=transformer.dtype,
                                   current_timestep=lambda: dpipe.current_timestep,
                                   mag_ratios=state.calibration["ratios"] if state.calibration else None)
            config = accel.method.build(accel.cache_params, context)  # type: ignore[misc]
            stack.callback(internals.restore_hook_state, transformer, internals.hook_state(transformer))
            _enable_cache(transformer, config)
            stack.callback(transformer.disable_cache)
            if accel.cache == "pab" and accel.cache_params["per_branch"]:
                per_branch(transformer)
            state.hooked = internals.hooked_modules(transformer)
            if not state.hooked:
                raise ParamError("cache", f"a method that hooks some module of this transformer "
                                 f"({type(transformer).__name__}); {accel.cache} hooked none", accel.cache)
        if accel.compile != "off":
            stack.enter_context(_compiled(transformer, accel.compile))
        else:
            state.counter = CallCounter(transformer)
            stack.callback(state.counter.remove)
        yield state


def _enable_cache(transformer: Any, config: Any) -> None:
    from diffusers.utils import logging as dlog

    logger = dlog.get_logger("diffusers.hooks")
    level = logger.level
    logger.setLevel(logging.ERROR)  # MagCache logs each block it hooks at INFO
    try:
        transformer.enable_cache(config)
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _attention_backend(transformer: Any, backend: str, device: str) -> Iterator[None]:
    """Set the attention backend of every attention processor; afterwards restore it and the active one.

    diffusers' process-wide active backend is restored too (``reset_attention_backend`` leaves it changed).
    """
    from diffusers.utils import logging as dlog

    if not device.startswith("cuda") and backend not in CPU_ATTENTION_BACKENDS:
        raise ParamError("attention_backend", f"one that runs on {device} ({', '.join(CPU_ATTENTION_BACKENDS)})",
                         backend)
    logger = dlog.get_logger("diffusers.models.modeling_utils")
    with internals.attention_backends_restored(transformer):
        level = logger.level
        logger.setLevel(logging.ERROR)  # "Attention backends are an experimental feature" on every call
        try:
            try:
                transformer.set_attention_backend(backend)
            except (RuntimeError, ValueError, ImportError) as exc:
                raise ParamError("attention_backend", f"a backend usable here ({exc})", backend) from None
            yield
        finally:
            logger.setLevel(level)


@contextlib.contextmanager
def _compiled(transformer: Any, mode: str) -> Iterator[None]:
    """Compile the transformer (or its repeated blocks) with ``torch.compile``, once per module.

    The compiled callables are kept and reused, and the plain ones restored after the call.
    """
    modules = [transformer] if mode == "transformer" else [
        m for m in transformer.modules() if type(m).__name__ in internals.repeated_block_names(transformer)]
    if not modules:
        raise ParamError("compile", f"'transformer': {type(transformer).__name__} declares no repeated blocks", mode)
    with internals.compiled_calls(modules):
        yield
