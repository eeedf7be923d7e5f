"""Every community Wan LoRA convention converted to one canonical diffusers/peft state dict, or refused.

:func:`read` reads a file, :func:`convert` converts it (the conventions and the canonical form are
listed there), :class:`Converted` is the result.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoRAError
from . import keynames
from .keynames import Key
from .layout import ModelLayout, diffusers_name


@dataclass(frozen=True)
class Converted:
    """A LoRA file in canonical form, with what it changes in one model (:func:`convert`).

    Example:
        >>> pipe.loras.inspect("style.safetensors").modules[:1]  # doctest: +SKIP
        ('blocks.0.attn1.to_q',)
    """

    #: canonical peft keys (``transformer.blocks.0.attn1.to_q.lora_A.weight``) -> tensors; empty when it changes nothing
    state_dict: dict[str, Any]
    #: the convention recognised, e.g. ``"kohya/musubi-tuner names (lora_unet_*), lora_down/lora_up, alpha"``
    format: str
    #: diffusers names of the modules whose weights the LoRA changes
    modules: tuple[str, ...]
    #: modules it names whose delta is exactly zero (left out of ``state_dict``)
    zero: tuple[str, ...]
    #: module names (as the file writes them) that match no module of the model
    unmatched: tuple[str, ...]
    #: all-zero deltas of norms, embeddings or modulation tables: no effect, not applied
    dropped: tuple[str, ...]

    def warning(self, name: str) -> str | None:
        """The warning a user should see for this LoRA (nothing matched, or nothing changes).

        Args:
            name: The LoRA path as given.

        Returns:
            The warning, or None.
        """
        touched = f"it touches {count(len(self.modules), 'module')}"
        if self.unmatched:
            return (f"LoRA {name} names {count(len(self.unmatched), 'module')} this model lacks, ignored (e.g. "
                    f"{self.unmatched[0]!r}); {touched}")
        if not self.modules:
            zero = count(len(self.zero), "module")
            return f"LoRA {name} changes nothing at scale 1: the delta is zero in all {zero} it names; {touched}"
        return None


def read(path: str | Path, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The tensors of a ``.safetensors`` LoRA and its peft config.

    Args:
        path: The local file.
        name: The LoRA path as given (for messages).

    Returns:
        The tensors by key, and the peft config (diffusers' file metadata, or the
        ``adapter_config.json`` beside peft's ``adapter_model.safetensors``) or None.

    Raises:
        LoRAError: The file or its config cannot be read (one sentence).

    Example:
        >>> tensors, config = read("style.safetensors", "style.safetensors")  # doctest: +SKIP
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    file = Path(path)
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise LoRAError(f"loras.path: could not load LoRA {name} into this model: it is not a readable "
                        f"safetensors file ({exc})") from exc
    # peft saves adapter_model.safetensors beside adapter_config.json; any other file name is not its pair
    config_file = file.parent / "adapter_config.json" if file.name == "adapter_model.safetensors" else None
    return tensors, peft_config(metadata, config_file, name)


def peft_config(metadata: Mapping[str, str], adapter_config: Path | None, name: str) -> dict[str, Any] | None:
    """lora_alpha / alpha_pattern / use_rslora / use_dora as diffusers (file metadata) or peft saved them.

    Args:
        metadata: The safetensors file's metadata.
        adapter_config: peft's ``adapter_config.json`` beside the file, or None.
        name: The LoRA path as given (for messages).

    Returns:
        The config, or None when neither is there.

    Raises:
        LoRAError: The config does not parse.

    Example:
        >>> peft_config({}, None, "style.safetensors") is None
        True
    """
    raw = metadata.get("lora_adapter_metadata")
    try:
        if raw:
            packed = json.loads(raw)
            return {k.removeprefix("transformer."): v for k, v in packed.items()
                    if k.startswith("transformer.") or "." not in k}
        if adapter_config is not None and adapter_config.is_file():
            return json.loads(adapter_config.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise LoRAError(f"loras.path: could not read the peft config of LoRA {name}: {exc}") from exc
    return None


@dataclass
class _Group:
    """The tensors a file holds for one module, by role (down, up, up_bias, alpha, diff, diff_b)."""

    module: str
    prefix: str
    keys: dict[str, str]
    tensors: dict[str, Any]


def convert(tensors: Mapping[str, Any], layout: ModelLayout, *, name: str,
            config: Mapping[str, Any] | None = None) -> Converted:
    """The canonical form of a LoRA state dict for the model ``layout`` describes.

    Read: diffusers/peft names (``transformer.``, ``base_model.model.`` or none; with or without peft's
    ``.default`` tag), original Wan names (``diffusion_model.`` as ComfyUI, ai-toolkit and diffusion-pipe
    write them, or none as DiffSynth-Studio does) with ``lora_A/lora_B`` or ``lora_down/lora_up``,
    kohya/musubi-tuner ``lora_unet_*`` (whole or partial files, with or without ``.alpha``), ``.alpha``
    on any module, bias deltas ``.diff_b`` and full weight deltas ``.diff``.

    Canonical form: ``transformer.<diffusers module>.lora_A.weight`` (r x in) and ``lora_B.weight``
    (out x r) with each module's alpha/rank folded into the factors, so peft runs every module at
    scale 1 and a request's LoRA scale is the only weight; ``lora_B.bias`` carries bias deltas. A full
    weight delta D of a Linear (out x in) becomes an exact factor pair: ``(I, D)`` or ``(D, I)``,
    whichever has the smaller rank.

    Args:
        tensors: The file's tensors by key.
        layout: The model's LoRA targets.
        name: The LoRA path as given (for messages).
        config: Its peft config (:func:`peft_config`), or None.

    Returns:
        The :class:`Converted` file.

    Raises:
        LoRAError: One sentence naming ``name``, what was recognised and what is wrong, for an empty
            file, full model weights, LyCORIS/DoRA variants, another model family's LoRA, shapes of
            another Wan size, or keys that match no module at all.

    Example:
        >>> converted = convert(load_file("style.safetensors"), ModelLayout.of(transformer),  # doctest: +SKIP
        ...                     name="style")
        >>> converted.modules[:1]  # doctest: +SKIP
        ('blocks.0.attn1.to_q',)
    """
    if not tensors:
        raise LoRAError(f"loras.path: {name} is an empty safetensors file: it holds no tensors, so there is no "
                        "LoRA to apply")
    names = list(tensors)
    unsupported = keynames.unsupported_kind(names)
    if unsupported:
        kind, key = unsupported
        raise LoRAError(f"loras.path: {name} is a {kind} file (keys like {key!r}); wanlab applies plain LoRA "
                        "factor pairs (lora_A/lora_B or lora_down/lora_up) and .diff/.diff_b weight deltas only")
    if config and config.get("use_dora"):
        raise LoRAError(f"loras.path: {name} is a DoRA adapter (use_dora in its peft config); wanlab applies plain "
                        "LoRA factor pairs and weight deltas only")
    parsed = {key: keynames.parse(key) for key in names}
    plain = [key for key, p in parsed.items() if p is None]
    if len(plain) == len(names):
        raise LoRAError(_plain_weights_message(name, plain, len(names), layout))
    groups = _group(name, {key: p for key, p in parsed.items() if p is not None}, tensors)
    fmt = _describe_format(list(groups.values()), parsed)
    resolved = {module: layout.resolve(module) for module in groups}
    unmatched = tuple(m for m, target in resolved.items() if target is None)
    if len(unmatched) == len(groups):
        family = keynames.foreign_model(names)
        model = f"this Wan transformer ({layout.blocks} blocks, width {layout.width})"
        if family:
            raise LoRAError(f"loras.path: {name} is {family} (keys like {names[0]!r}), not a Wan LoRA: none of its "
                            f"{count(len(groups), 'module')} is a module of {model}")
        raise LoRAError(f"loras.path: {name} holds LoRA weights ({fmt}), but none of its "
                        f"{count(len(groups), 'module')} (e.g. {unmatched[0]!r}) is a module of {model}")
    if plain:
        raise LoRAError(_plain_weights_message(name, plain, len(names), layout))
    seen: dict[str, str] = {}
    for module, target in resolved.items():
        if target is not None and target in seen:
            raise LoRAError(f"loras.path: {name} names the module {target!r} twice (as {seen[target]!r} and "
                            f"{module!r}); it mixes two conventions")
        if target is not None:
            seen[target] = module
    matched = {target: groups[module] for module, target in resolved.items() if target is not None}
    _check_shapes(name, fmt, matched, layout)
    return _canonical(name, fmt, matched, layout, config or {}, unmatched)


def _group(name: str, parsed: Mapping[str, Key], tensors: Mapping[str, Any]) -> dict[str, _Group]:
    """Each module (as written, prefix removed) with its tensors by role; one peft adapter per file."""
    tags = sorted({p.tag for p in parsed.values() if p.tag is not None})
    if len(tags) > 1:
        raise LoRAError(f"loras.path: {name} holds {len(tags)} peft adapters ({', '.join(tags)}); save one adapter "
                        "per file")
    groups: dict[str, _Group] = {}
    for key, p in parsed.items():
        group = groups.setdefault(p.module, _Group(p.module, p.prefix, {}, {}))
        if p.role in group.keys:
            raise LoRAError(f"loras.path: {name} holds two {p.role} tensors for {p.module!r} "
                            f"({group.keys[p.role]!r} and {key!r})")
        group.keys[p.role] = key
        group.tensors[p.role] = tensors[key]
    return groups


def _plain_weights_message(name: str, plain: list[str], total: int, layout: ModelLayout) -> str:
    if len(plain) == total:
        stems = [keynames.split_prefix(key.rpartition(".")[0])[1] for key in plain[:200]]
        what = ("full Wan transformer weights" if any(layout.resolve(s) is not None for s in stems)
                else "full model weights")
        return (f"loras.path: {name} holds {what} ({total} tensors such as {plain[0]!r}), not a LoRA: a LoRA holds "
                "lora_A/lora_B (or lora_down/lora_up) factor pairs; load full weights as a model with wanlab.load")
    what = "that is neither a LoRA factor nor a weight delta" if len(plain) == 1 else (
        "that are neither LoRA factors nor weight deltas")
    return (f"loras.path: {name} holds {count(len(plain), 'tensor')} {what} (e.g. {plain[0]!r}) beside its LoRA "
            "weights; wanlab refuses rather than apply part of the file")


def _describe_format(groups: list[_Group], parsed: Mapping[str, Key | None]) -> str:
    """What a file's names say about the tool that wrote it, for records and messages."""
    prefixes = sorted({g.prefix for g in groups})
    prefix = f" ({prefixes[0]}*)" if prefixes != [""] else " without prefix"
    if any(p.startswith("lora_unet") for p in prefixes):
        naming = "kohya/musubi-tuner names (lora_unet_*)"
    elif "lycoris_" in prefixes:
        naming = "LyCORIS names (lycoris_*)"
    elif any(diffusers_name(g.module) is not None for g in groups):
        naming = "original Wan names" + (prefix if prefixes != [""] else " without prefix (DiffSynth-Studio)")
    else:
        naming = "diffusers/peft names" + prefix
    factor_names = {key.split(".")[-2 - (p.tag is not None)] for key, p in parsed.items()
                    if p is not None and p.role in ("down", "up")}
    parts = [naming]
    if factor_names & {"lora_down", "lora_up"}:
        parts.append("lora_down/lora_up")
    if factor_names & {"lora_A", "lora_B"}:
        tagged = any(p is not None and p.tag for p in parsed.values())
        parts.append("lora_A/lora_B" + (" (.default)" if tagged else ""))
    roles = {role for g in groups for role in g.tensors}
    parts += [role for role in ("alpha", "diff", "diff_b") if role in roles]
    return ", ".join(parts)


def _check_shapes(name: str, fmt: str, matched: Mapping[str, _Group], layout: ModelLayout) -> None:
    """Refuse factors or deltas whose shapes are not this model's (a 14B LoRA on the 1.3B, say)."""
    bad: list[str] = []
    file_width = None
    for target in (name for name in layout.linear if name in matched):  # model order: the first bad one first
        group = matched[target]
        n_in, n_out = layout.linear[target]
        t = group.tensors
        down, up, diff = t.get("down"), t.get("up"), t.get("diff")
        if any(x is not None and x.ndim != 2 for x in (down, up, diff)):
            bad.append(f"{target} holds tensors of shapes {_shapes(t)}, not matrices")
            continue
        got_in = int(down.shape[1]) if down is not None else int(diff.shape[1]) if diff is not None else None
        got_out = int(up.shape[0]) if up is not None else int(diff.shape[0]) if diff is not None else None
        for role in ("up_bias", "diff_b"):
            if role in t and got_out is None:
                got_out = int(t[role].shape[0]) if t[role].ndim == 1 else -1
        if got_in not in (None, n_in) or got_out not in (None, n_out):
            bad.append(f"{target} has {got_in} inputs and {got_out} outputs in the file, {n_in} and {n_out} in "
                       "this model")
            if target.endswith("attn1.to_q") and got_in is not None and file_width is None:
                file_width = got_in
        elif down is not None and up is not None and down.shape[0] != up.shape[1]:
            bad.append(f"{target} has a down factor of rank {down.shape[0]} and an up factor of rank {up.shape[1]}")
        elif any(role in t and tuple(t[role].shape) != (n_out,) for role in ("up_bias", "diff_b")):
            bad.append(f"{target} holds tensors of shapes {_shapes(t)}; its bias has {n_out} values")
    if not bad:
        return
    made_for = (f" for a transformer of {layout.describe_width(file_width)}, but this model has width "
                f"{layout.width}" if file_width is not None and file_width != layout.width else "")
    more = f" (and {count(len(bad) - 1, 'more module')})" if len(bad) > 1 else ""
    raise LoRAError(f"loras.path: {name} is a Wan LoRA ({fmt}){made_for}; its shapes do not fit: {bad[0]}{more}")


def _shapes(tensors: Mapping[str, Any]) -> str:
    return ", ".join(f"{role} {'x'.join(str(n) for n in t.shape) or 'scalar'}" for role, t in tensors.items())


def _canonical(name: str, fmt: str, matched: Mapping[str, _Group], layout: ModelLayout, config: Mapping[str, Any],
               unmatched: tuple[str, ...]) -> Converted:
    """Fold alphas, turn deltas into factor pairs, leave out zero deltas: the peft state dict."""
    import torch

    pairs: dict[str, tuple[Any, Any, Any]] = {}
    zero, dropped, refused = [], [], []
    for target, group in matched.items():
        t = group.tensors
        if target in layout.other:
            if "down" in t or "up" in t:
                raise LoRAError(f"loras.path: {name} has LoRA factors ({fmt}) for {target!r}, which is not a Linear "
                                "layer; wanlab applies LoRA factors to Linear layers only")
            deltas = [t[role] for role in ("diff", "diff_b") if role in t]
            if any(bool(d.any()) for d in deltas):
                refused.append(target)
            elif deltas:
                dropped.append(target)
            continue
        if ("down" in t) != ("up" in t) or "down_bias" in t:
            have = ", ".join(group.keys.values())
            raise LoRAError(f"loras.path: {name} has an incomplete LoRA pair for {target!r} (only {have})")
        factors = []
        if "down" in t:
            factors.append(_fold(t["down"], t["up"], _scale(name, group, target, config)))
        if "diff" in t:
            factors.append(_identity_pair(t["diff"]))
        bias = None
        if "up_bias" in t:  # peft scales lora_B's bias with the adapter: fold the same scale in
            bias = t["up_bias"].float() * _scale(name, group, target, config)
        if "diff_b" in t:
            bias = t["diff_b"] if bias is None else bias + t["diff_b"]
        if not any(bool(a.any()) and bool(b.any()) for a, b in factors) and (bias is None or not bool(bias.any())):
            if factors or bias is not None:
                zero.append(target)
            continue
        if not factors and bias is not None:
            # a bias delta alone: peft needs a factor pair, an exactly-zero one adds nothing
            n_in, n_out = layout.linear[target]
            factors.append((torch.zeros(1, n_in, dtype=bias.dtype), torch.zeros(n_out, 1, dtype=bias.dtype)))
        dtype = _common_dtype([x for pair in factors for x in pair])
        down = torch.cat([a.to(dtype) for a, _ in factors], dim=0)
        up = torch.cat([b.to(dtype) for _, b in factors], dim=1)
        pairs[target] = (down, up, bias)
    if refused:
        raise LoRAError(f"loras.path: {name} ({fmt}) holds non-zero weight deltas for "
                        f"{count(len(refused), 'module')} outside the Linear layers (e.g. {refused[0]!r}); wanlab "
                        "applies deltas to Linear layers only and refuses rather than drop them")
    with_bias = any(bias is not None for _, _, bias in pairs.values())
    state: dict[str, Any] = {}
    order = {module: i for i, module in enumerate(layout.linear)}
    modules = sorted(pairs, key=order.__getitem__)
    for target in modules:
        down, up, bias = pairs[target]
        state[f"transformer.{target}.lora_A.weight"] = down.contiguous()
        state[f"transformer.{target}.lora_B.weight"] = up.contiguous()
        if with_bias:  # peft gives every module of a biased adapter a bias: zeros where the file has none
            state[f"transformer.{target}.lora_B.bias"] = (
                bias if bias is not None else torch.zeros(up.shape[0], dtype=up.dtype)).contiguous()
    return Converted(state_dict=state, format=fmt, modules=tuple(modules), zero=tuple(zero), unmatched=unmatched,
                     dropped=tuple(dropped))


def _scale(name: str, group: _Group, target: str, config: Mapping[str, Any]) -> float:
    """The alpha / rank of one module: its ``.alpha`` tensor, else the peft config, else 1 (alpha = rank)."""
    rank = int(group.tensors["down"].shape[0])
    if "alpha" in group.tensors:
        alpha = float(group.tensors["alpha"].float().reshape(-1)[0])
    elif config.get("lora_alpha") is not None or config.get("alpha_pattern"):
        alpha = float(_pattern_value(config.get("alpha_pattern") or {}, (group.module, target),
                                     config.get("lora_alpha", rank)))
        if config.get("use_rslora"):
            return alpha / math.sqrt(rank)
    else:
        return 1.0
    if not math.isfinite(alpha) or rank == 0:
        raise LoRAError(f"loras.path: {name} has alpha {alpha} for {target!r} with rank {rank}; alpha must be a "
                        "finite number and the rank positive")
    return alpha / rank


def _pattern_value(patterns: Mapping[str, Any], names: tuple[str, ...], default: Any) -> Any:
    """The lookup in peft's ``alpha_pattern``: a key matches a module name or its dotted suffix."""
    for key, value in patterns.items():
        regex = rf"{key[1:]}$" if key.startswith("^") else rf"(.*\.)?{key}$"
        if any(re.match(regex, n) for n in names):
            return value
    return default


def _fold(down: Any, up: Any, scale: float) -> tuple[Any, Any]:
    """Fold ``scale`` into the factors, split in powers of two as diffusers does (exact when scale is one)."""
    if scale == 1.0:
        return down, up
    scale_down, scale_up = scale, 1.0
    while scale_down * 2 < scale_up:
        scale_down *= 2
        scale_up /= 2
    return down.float() * scale_down, up.float() * scale_up


def _identity_pair(diff: Any) -> tuple[Any, Any]:
    """A full weight delta D (out x in) as the exact factor pair with the smaller rank: (I, D) or (D, I)."""
    import torch

    n_out, n_in = diff.shape
    if n_in <= n_out:
        return torch.eye(n_in, dtype=diff.dtype), diff
    return diff, torch.eye(n_out, dtype=diff.dtype)


def count(n: int, word: str) -> str:
    """A count with its noun, plural when not 1.

    Args:
        n: The count.
        word: The noun, singular.

    Returns:
        ``"1 module"``, ``"2 modules"``.

    Example:
        >>> count(1, "module"), count(2, "module")
        ('1 module', '2 modules')
    """
    return f"{n} {word}{'s' * (n != 1)}"


def _common_dtype(tensors: list[Any]) -> Any:
    import torch

    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype
