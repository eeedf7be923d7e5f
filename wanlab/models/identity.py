"""Which model a backend runs, known without loading its weights: :class:`ModelIdentity`.

:func:`identity` computes it for a built-in name, a checkpoint folder or a hub id (from the recorded
fingerprint or the files' hashes, cached on disk, and the scheduler's configuration file), so a
sweep's table, its dry run and ``verify``'s record checks never wait for a 14B model to load.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import LoadError, ParamError
from ..values import check_bool, check_int, plain
from .registry import DEFAULT_MODEL
from .resolution import ResolvedModel, resolve

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt")
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
#: Where a request's rules come from: ``"local"`` (any multiple of 16, ``num_frames``) or ``"api"``
#: (the hosted API's four sizes and 81 frames only).
RULES = ("local", "api")


@dataclass(frozen=True)
class ModelIdentity:
    """Everything about a backend's model that run keys and records need, and what it can give.

    A run key is the hash of the request and of everything about the model that changes frames: the
    weights (``fingerprint``), the generation ``settings`` and the acceleration setting.

    Attributes:
        model_id: a built-in name, a folder (resolved), a hub id, or a service's model name.
        source: ``builtin``, ``folder``, ``hub``, ``wanlab-server`` or ``service``.
        fingerprint: sha256 of the weights (or the service's identity).
        settings: the generation settings that change frames (dtype, text length, scheduler, offload,
            tiling; part of every run key).
        native: request fields filled in when a request leaves them out.
        exact: frames are bit-reproducible and stored losslessly (False: lossy downloads).
        latents: final latents come with each video.
        rules: ``"local"`` or ``"api"`` (see :data:`RULES`).

    Raises:
        ParamError: ``rules`` is not one of :data:`RULES`.

    Example:
        >>> ident = identity("tiny", device="cpu")
        >>> ident.model_info["source"], ident.same_model(ModelIdentity.from_dict(ident.to_dict()))
        ('builtin', True)
    """

    model_id: str
    source: str
    fingerprint: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    native: Mapping[str, Any] = field(default_factory=dict)
    exact: bool = True
    latents: bool = True
    rules: str = "local"

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        object.__setattr__(self, "native", MappingProxyType(dict(self.native)))
        if self.rules not in RULES:
            raise ParamError("rules", f"one of {', '.join(RULES)}", self.rules)

    def __reduce__(self) -> tuple[Any, ...]:  # mapping proxies do not pickle (Ray ships identities)
        return (_rebuild, (self.to_dict(),))

    @property
    def model_info(self) -> dict[str, str]:
        """The record's ``"model"`` entry: id, fingerprint and source."""
        return {"id": self.model_id, "fingerprint": self.fingerprint, "source": self.source}

    @property
    def max_sequence_length(self) -> int | None:
        """The text length prompts are encoded at (None: the model's own)."""
        return self.settings.get("max_sequence_length")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (``wanlab serve`` publishes it at ``GET /health``).

        Returns:
            ``model_id``, ``source``, ``fingerprint``, ``settings``, ``native``, ``exact``, ``latents`` and
            ``rules``; :meth:`from_dict` reads it back.
        """
        return {"model_id": self.model_id, "source": self.source, "fingerprint": self.fingerprint,
                "settings": plain(self.settings), "native": dict(self.native), "exact": self.exact,
                "latents": self.latents, "rules": self.rules}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelIdentity:
        """The identity :meth:`to_dict` wrote (unknown keys are ignored).

        Args:
            data: the plain form, e.g. a wanlab server's ``/health`` identity.

        Returns:
            The :class:`ModelIdentity`.

        Raises:
            ParamError: ``model_id``, ``source`` or ``fingerprint`` is missing.
        """
        known = ("model_id", "source", "fingerprint", "settings", "native", "exact", "latents", "rules")
        missing = [k for k in ("model_id", "source", "fingerprint") if k not in data]
        if missing:
            raise ParamError(f"identity.{missing[0]}", "given", None)
        return cls(**{k: v for k, v in data.items() if k in known})

    def __hash__(self) -> int:
        return hash((self.model_id, self.source, self.fingerprint, json.dumps(plain(self.settings), sort_keys=True)))

    def same_model(self, other: ModelIdentity) -> bool:
        """Whether ``other`` generates the same frames for the same request (weights and settings).

        Args:
            other: another identity.

        Returns:
            True when the fingerprints and the settings are equal (the id and source may differ).
        """
        return self.fingerprint == other.fingerprint and plain(self.settings) == plain(other.settings)


def _rebuild(data: Mapping[str, Any]) -> ModelIdentity:
    return ModelIdentity.from_dict(data)


# --------------------------------------------------------------------------------------------------
# fingerprints
def tensors_fingerprint(pipe: Any) -> str:
    """sha256 over every weight of text encoder, transformer and VAE plus the tokenizer's vocabulary.

    Args:
        pipe: a loaded ``diffusers.WanPipeline``.

    Returns:
        The hex digest (names, dtypes, shapes and bytes of every tensor, in sorted order).
    """
    import torch

    digest = hashlib.sha256()
    for part in ("text_encoder", "transformer", "vae"):
        module = getattr(pipe, part)
        for key, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{part}.{key}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    vocab = sorted(pipe.tokenizer.get_vocab().items())
    digest.update(json.dumps(vocab).encode())
    return digest.hexdigest()


def cache_root() -> Path:
    """The wanlab cache folder: ``$WANLAB_CACHE``, default ``~/.cache/wanlab``.

    Returns:
        The folder (not made here).
    """
    return Path(os.environ.get("WANLAB_CACHE", Path.home() / ".cache" / "wanlab"))


class FileHashes:
    """sha256 of files, kept on disk by resolved path, size and modification time (``$WANLAB_CACHE/file-hashes.json``).

    A 14B checkpoint is hashed once, not on every identity.

    Used as ``with FileHashes() as hashes:``, which holds a lock across processes, so processes
    identifying one checkpoint at once (a Ray pool's workers on one machine) hash it once.
    """

    def __init__(self) -> None:
        self.file = cache_root() / "file-hashes.json"
        self.known: dict[str, str] = {}
        self.changed = False
        self._held = contextlib.ExitStack()

    def __enter__(self) -> FileHashes:
        from ..fsutil import file_lock

        self._held.enter_context(file_lock(self.file.with_suffix(".lock")))
        try:
            self.known = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self.known = {}
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._held:  # the lock is let go even if saving fails
            self.save()

    def __call__(self, path: Path) -> str:
        """The sha256 of the file at ``path``, hashed again only when its size or modification time changed."""
        from ..fsutil import sha256_file

        real = path.resolve()
        stat = real.stat()
        key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in self.known:
            self.known[key] = sha256_file(real)
            self.changed = True
        return self.known[key]

    def save(self) -> None:
        """Write the known hashes to disk when any is new (a write that fails is skipped)."""
        from ..fsutil import write_json

        if self.changed:
            with contextlib.suppress(OSError):
                write_json(self.file, self.known)


def files_fingerprint(folder: Path) -> str:
    """sha256 over the relative names and sha256s of a checkpoint folder's files (cached on disk).

    Args:
        folder: the checkpoint folder; its weight files (:data:`WEIGHT_SUFFIXES`) are hashed.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with FileHashes() as hashes:
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
            digest.update(f"{file.relative_to(folder).as_posix()}:{hashes(file)};".encode())
    return digest.hexdigest()


def recorded_fingerprint(source: ResolvedModel) -> str | None:
    """The fingerprint a built-in or a carded folder records, trusted only while its files match its ``SHA256SUMS``.

    An edited checkpoint is then identified by its files instead.

    Args:
        source: the resolved model.

    Returns:
        The recorded fingerprint, or None (none recorded, or the files no longer match).
    """
    if source.recorded is None or source.folder is None:
        return source.recorded
    return source.recorded if _sums_match(source.folder) else None


def weights_fingerprint(source: ResolvedModel) -> str:
    """The weights' fingerprint without loading them.

    The recorded one (:func:`recorded_fingerprint`), else the hashes of the folder's files (cached on
    disk).

    Args:
        source: the resolved model.

    Returns:
        The fingerprint.
    """
    fingerprint = recorded_fingerprint(source)
    if fingerprint is None:
        assert source.folder is not None  # a model built in code always records its fingerprint
        fingerprint = files_fingerprint(source.folder)
    return fingerprint


def _sums_match(folder: Path) -> bool:
    """Whether every file ``SHA256SUMS`` lists is there with that sha256 (hashes cached on disk)."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return False
    with FileHashes() as hashes:
        for line in sums.read_text().splitlines():
            digest, _, name = line.partition("  ")
            file = folder / name
            if not file.is_file() or hashes(file) != digest:
                return False
        return True


# --------------------------------------------------------------------------------------------------
# settings and the identity itself
def resolve_device(device: str | None) -> str:
    """``device`` checked (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or the default: CUDA when present.

    Args:
        device: the device asked for (None: the default).

    Returns:
        The device.

    Raises:
        ParamError: not one of those forms.
        LoadError: CUDA asked for on a machine without a CUDA GPU.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not re.match(r"^(cpu|cuda(:\d+)?|mps)$", device):
        raise ParamError("device", "'cpu', 'cuda', 'cuda:N' or 'mps'", device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError(f"device {device!r} was asked for, but torch sees no CUDA GPU on this machine.")
    return device


def dtype_name(dtype: Any, device: str) -> str:
    """The weights' dtype as a name: given, or bfloat16 on CUDA and float32 elsewhere.

    Args:
        dtype: a name (``"bf16"``, ``"float32"``, ...), a ``torch.dtype``, or None.
        device: the device the model runs on.

    Returns:
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Raises:
        ParamError: an unknown dtype.

    Example:
        >>> dtype_name(None, "cpu"), dtype_name(None, "cuda"), dtype_name("bf16", "cpu")
        ('float32', 'bfloat16', 'bfloat16')
    """
    if dtype is None:
        return "bfloat16" if device.startswith("cuda") else "float32"
    if not isinstance(dtype, str):
        text = str(dtype).replace("torch.", "")
        if text in DTYPES:
            return DTYPES[text]
    if dtype not in DTYPES:
        raise ParamError("dtype", f"one of {', '.join(DTYPES)} or a torch.dtype", dtype)
    return DTYPES[dtype]


def scheduler_settings(scheduler_class: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """The scheduler part of the settings.

    Its class and every config value but ``flow_shift`` (set per request) and diffusers' private ``_``
    keys.

    Args:
        scheduler_class: the scheduler's class.
        config: its configuration.

    Returns:
        ``{"class": name, "config": {...}}``.
    """
    return {"class": scheduler_class.__name__,
            "config": {k: v for k, v in dict(config).items() if not k.startswith("_") and k != "flow_shift"}}


def _scheduler_of(source: ResolvedModel) -> dict[str, Any]:
    """The scheduler settings of a model from its configuration alone (no weights)."""
    import diffusers

    if source.builtin is not None and source.builtin.build is not None:
        from . import tiny

        cls, config = diffusers.UniPCMultistepScheduler, dict(tiny.SCHEDULER_CONFIG)
    else:
        assert source.folder is not None
        file = source.folder / "scheduler" / "scheduler_config.json"
        try:
            config = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise LoadError(f"{file}: cannot read the scheduler's configuration ({exc}).") from None
        cls = getattr(diffusers, str(config.get("_class_name", "")), None)
        if cls is None:
            raise LoadError(f"{file}: unknown scheduler class {config.get('_class_name')!r}.")
    return scheduler_settings(cls, cls.from_config(config).config)


def generation_settings(*, dtype: str, max_sequence_length: int, scheduler: Mapping[str, Any],
                        cpu_offload: bool = False, vae_tiling: bool = False,
                        group_offload: str | None = None) -> dict[str, Any]:
    """Every setting besides the request that changes frames, in the form records and run keys hold.

    Args:
        dtype: the weights' dtype name.
        max_sequence_length: the text length prompts are encoded at.
        scheduler: :func:`scheduler_settings`.
        cpu_offload: model CPU offload on.
        vae_tiling: VAE tiling on.
        group_offload: the group offload mode (None: off; left out of the settings then).

    Returns:
        The settings (the VAE's dtype is always float32).
    """
    out = {"dtype": dtype, "vae_dtype": "float32", "max_sequence_length": max_sequence_length,
           "scheduler": dict(scheduler), "cpu_offload": cpu_offload, "vae_tiling": vae_tiling}
    if group_offload:
        out["group_offload"] = group_offload
    return out


GROUP_OFFLOAD_MODES = ("block_level", "leaf_level")


def check_group_offload(value: Any, device: str, cpu_offload: bool) -> str | None:
    """Validate ``load(group_offload=...)``: None, ``"block_level"`` or ``"leaf_level"``, CUDA only.

    Args:
        value: None, False, True (``"block_level"``) or a mode name.
        device: the resolved device.
        cpu_offload: whether model CPU offload is also asked for.

    Returns:
        The mode, or None for off.

    Raises:
        ParamError: an unknown mode, a device that is not CUDA, or with ``cpu_offload``.

    Example:
        >>> check_group_offload(None, "cpu", False), check_group_offload(True, "cuda", False)
        (None, 'block_level')
    """
    if value is None or value is False:
        return None
    if value is True:
        value = "block_level"
    if not isinstance(value, str) or value not in GROUP_OFFLOAD_MODES:
        raise ParamError("group_offload", f"None, True or one of {', '.join(GROUP_OFFLOAD_MODES)}", value)
    if not device.startswith("cuda"):
        raise ParamError("group_offload", "used with a CUDA device: it streams weight groups from CPU memory to "
                         f"the GPU as they are needed; on {device!r} every weight already lives in that memory, "
                         "so there is nothing to offload", value)
    if cpu_offload:
        raise ParamError("group_offload", "used without cpu_offload (they are two ways to do the same thing)", value)
    return value


def check_max_sequence_length(value: Any) -> int | None:
    """``max_sequence_length`` checked: None, or an int in 1..512 (else a ParamError naming it)."""
    return check_int("max_sequence_length", value, 1, 512, optional=True)


@dataclass(frozen=True)
class LoadOptions:
    """The options of ``wanlab.load`` and :func:`identity` that change frames, checked.

    ``device`` resolved, ``dtype`` a name, ``group_offload`` a mode or None, ``max_sequence_length``
    None for the model's own.
    """

    device: str
    dtype: str
    cpu_offload: bool = False
    vae_tiling: bool = False
    max_sequence_length: int | None = None
    group_offload: str | None = None


def check_load_options(*, device: str | None = None, dtype: Any = None, cpu_offload: bool = False,
                       vae_tiling: bool = False, max_sequence_length: int | None = None,
                       group_offload: str | bool | None = None) -> LoadOptions:
    """``wanlab.load``'s model options checked, each bad one a :class:`~wanlab.ParamError` naming it.

    A CUDA device on a machine without one is a :class:`~wanlab.LoadError`.
    """
    device_ = resolve_device(device)
    dtype_ = dtype_name(dtype, device_)
    for flag, value in (("cpu_offload", cpu_offload), ("vae_tiling", vae_tiling)):
        check_bool(flag, value)
    length = check_max_sequence_length(max_sequence_length)
    offload = check_group_offload(group_offload, device_, cpu_offload)
    return LoadOptions(device_, dtype_, cpu_offload, vae_tiling, length, offload)


def identify(source: ResolvedModel, options: LoadOptions, *, fingerprint: str,
             scheduler: Mapping[str, Any]) -> ModelIdentity:
    """The identity of a resolved model run with ``options``.

    Given its weights' fingerprint and its scheduler's settings (from its configuration, or from the
    loaded scheduler).
    """
    settings = generation_settings(dtype=options.dtype,
                                   max_sequence_length=options.max_sequence_length or source.max_sequence_length,
                                   scheduler=scheduler, cpu_offload=options.cpu_offload,
                                   vae_tiling=options.vae_tiling, group_offload=options.group_offload)
    return ModelIdentity(source.model_id, source.source, fingerprint, settings, source.native)


def identity(model: Any = DEFAULT_MODEL, *, device: str | None = None, dtype: Any = None, cpu_offload: bool = False,
             vae_tiling: bool = False, max_sequence_length: int | None = None,
             group_offload: str | bool | None = None) -> ModelIdentity:
    """The :class:`ModelIdentity` that ``wanlab.load(model, ...)`` with the same options will have.

    Computed without loading weights: built-ins and carded folders give their recorded fingerprint,
    other folders and hub ids their files' hashes (cached on disk).

    Args:
        model: A built-in name, a checkpoint folder or a hub id (in the local cache).
        device: As ``wanlab.load`` (only the dtype it implies changes the identity).
        dtype: As ``wanlab.load``.
        cpu_offload: As ``wanlab.load``.
        vae_tiling: As ``wanlab.load``.
        max_sequence_length: As ``wanlab.load``.
        group_offload: As ``wanlab.load``.

    Returns:
        The model's :class:`ModelIdentity`.

    Raises:
        ParamError: An option is not one ``wanlab.load`` accepts.
        LoadError: The model cannot be found or read (see :func:`resolve`).

    Example:
        >>> ident = identity("tiny")
        >>> ident.model_id, ident.source, ident.native["num_frames"], ident.settings["dtype"]
        ('tiny', 'builtin', 33, 'float32')
    """
    source = resolve(model)
    options = check_load_options(device=device, dtype=dtype, cpu_offload=cpu_offload, vae_tiling=vae_tiling,
                                 max_sequence_length=max_sequence_length, group_offload=group_offload)
    return identify(source, options, fingerprint=weights_fingerprint(source), scheduler=_scheduler_of(source))
