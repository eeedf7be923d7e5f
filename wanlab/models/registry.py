"""The built-in offline models, and model cards: what a checkpoint folder declares about itself.

Holds :class:`Builtin` and the registry (:func:`builtin`, :func:`builtins`, :data:`DEFAULT_MODEL`:
``tiny`` built in code from fixed seeds, ``toy`` a trained checkpoint shipped inside the package),
and :class:`Card` with :func:`read_card` / :func:`write_card` for a folder's ``wanlab.json``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LoadError

#: The model used when none is named: the built-in one trained on moving shapes, whose videos show what
#: the request asks (``tiny`` has random weights: its videos are noise).
DEFAULT_MODEL = "toy"
CARD_NAME = "wanlab.json"
CARD_FORMAT = 1
#: The trained toy checkpoint shipped inside the package (``python -m wanlab.toy.train --out`` here).
TOY_FOLDER = Path(__file__).resolve().parent / "toy"
#: The settings a real Wan 2.1 checkpoint runs at: none besides the hosted API's defaults.
REAL_NATIVE: dict[str, Any] = {}
REAL_MAX_SEQUENCE_LENGTH = 512
#: The request fields a card's ``trained`` size may name.
TRAINED_FIELDS = frozenset({"width", "height", "num_frames"})


@dataclass(frozen=True)
class Card:
    """What a checkpoint declares about itself (``wanlab.json``).

    A card lets the same folder give the same identity and defaults whether it is named (``"toy"``)
    or given by its path, and before any weight is loaded.

    Attributes:
        name: The model's name.
        description: One line about it.
        native: Request fields (``wanlab.Params`` names) generation fills in when they are not given.
        max_sequence_length: The text length the model was trained with.
        fingerprint: The sha256 its weights hash to, or ``None``.
        demo_prompts: Prompts that show what it can do.
        vocabulary: A closed vocabulary, by kind of word.
        trained: The request size it was trained at.

    Example:
        >>> card = read_card(TOY_FOLDER)
        >>> card.name, dict(card.trained)
        ('toy', {'width': 64, 'height': 64, 'num_frames': 17})
    """

    name: str
    description: str = ""
    native: Mapping[str, Any] = field(default_factory=dict)
    max_sequence_length: int = REAL_MAX_SEQUENCE_LENGTH
    fingerprint: str | None = None
    demo_prompts: tuple[str, ...] = ()
    #: A closed vocabulary, by kind of word (a model trained on captions made of these words alone).
    vocabulary: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The request size it was trained at (``width``, ``height``, ``num_frames``); empty when any size is its own.
    trained: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The card as ``wanlab.json`` holds it (with ``format``; ``vocabulary`` and ``trained`` only when set).

        Returns:
            A JSON-ready dict that :func:`read_card` reads back to an equal card.

        Example:
            >>> Card("mine", native={"steps": 20}).to_dict()["native"], sorted(Card("mine").to_dict())[:3]
            ({'steps': 20}, ['demo_prompts', 'description', 'fingerprint'])
        """
        out = {"format": CARD_FORMAT, "name": self.name, "description": self.description, "native": dict(self.native),
               "max_sequence_length": self.max_sequence_length, "fingerprint": self.fingerprint,
               "demo_prompts": list(self.demo_prompts)}
        if self.vocabulary:
            out["vocabulary"] = {kind: list(words) for kind, words in self.vocabulary.items()}
        if self.trained:
            out["trained"] = dict(self.trained)
        return out


def read_card(folder: Path) -> Card | None:
    """The model card of a checkpoint folder, or None when it has none.

    Args:
        folder: A checkpoint folder.

    Returns:
        The :class:`Card` read from ``folder/wanlab.json``, or ``None`` when there is no such file.

    Raises:
        wanlab.LoadError: The card is damaged (unreadable, not JSON, another format, a missing name), its
            native settings are not valid request fields or hold a prompt, or ``trained`` names
            another field; the message names the file.

    Example:
        >>> read_card(TOY_FOLDER).name
        'toy'
        >>> read_card(Path("/nonexistent")) is None
        True
    """
    from ..params import Params

    file = folder / CARD_NAME
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("format") != CARD_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {CARD_FORMAT}")
        native = dict(data.get("native") or {})
        Params(**{"prompt": "x", **{k: v for k, v in native.items() if k != "prompt"}})  # the fields and ranges
        if "prompt" in native:
            raise ValueError("a model card's native settings do not hold a prompt")
        vocabulary = {str(kind): tuple(str(w) for w in words)
                      for kind, words in (data.get("vocabulary") or {}).items()}
        trained = {str(k): int(v) for k, v in (data.get("trained") or {}).items()}
        if set(trained) - TRAINED_FIELDS:
            raise ValueError(f"trained holds {sorted(set(trained) - TRAINED_FIELDS)}; "
                             f"it may hold {sorted(TRAINED_FIELDS)}")
        return Card(name=str(data["name"]), description=str(data.get("description", "")), native=native,
                    max_sequence_length=int(data.get("max_sequence_length", REAL_MAX_SEQUENCE_LENGTH)),
                    fingerprint=data.get("fingerprint"), demo_prompts=tuple(data.get("demo_prompts") or ()),
                    vocabulary=vocabulary, trained=trained)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoadError(f"{file}: not a readable wanlab model card ({exc}).") from None


def write_card(folder: str | os.PathLike[str], card: Card) -> Path:
    """Write ``card`` as the folder's ``wanlab.json`` (atomically); e.g. after training a checkpoint.

    Args:
        folder: The checkpoint folder (it must exist).
        card: The card.

    Returns:
        The path of the written file.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> path = write_card(folder, Card("mine", native={"steps": 20}, max_sequence_length=16))
        >>> path.name, read_card(folder) == Card("mine", native={"steps": 20}, max_sequence_length=16)
        ('wanlab.json', True)
    """
    from ..fsutil import write_json

    target = Path(folder) / CARD_NAME
    write_json(target, card.to_dict())
    return target


@dataclass(frozen=True)
class Builtin:
    """An offline model: built in code (``build``) or a shipped checkpoint ``folder`` with a card.

    Attributes:
        name: Its name (``"tiny"``, ``"toy"``).
        description: One line about it.
        build: Builds the pipeline in code, or ``None`` for a shipped checkpoint.
        folder: The shipped checkpoint folder, or ``None`` for a model built in code.
        native: Request fields (``wanlab.Params`` names) that generation fills in when they are not given.
        max_sequence_length: The text length the model was trained with (a property of the model, not
            of the request).
        fingerprint: The sha256 its weights hash to (recorded, so that run keys are known without
            loading it).
        demo_prompts: Prompts that show what it can do.
        vocabulary: What a model trained on a closed world knows: its words by kind
            (:mod:`wanlab.models.scope` warns outside them).
        trained: The size it was trained at (``width``, ``height``, ``num_frames``).

    Example:
        >>> toy = builtin("toy")
        >>> toy.folder == TOY_FOLDER, toy.build is None, TINY.folder is None
        (True, True, True)
    """

    name: str
    description: str
    build: Callable[[], Any] | None = None
    folder: Path | None = None
    native: Mapping[str, Any] = field(default_factory=dict)
    max_sequence_length: int = REAL_MAX_SEQUENCE_LENGTH
    fingerprint: str | None = None
    demo_prompts: tuple[str, ...] = ()
    vocabulary: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    trained: Mapping[str, int] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int | None:
        """Bytes on disk of a shipped checkpoint (None for a model built in code)."""
        if self.folder is None:
            return None
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


def _build_tiny() -> Any:
    from . import tiny

    return tiny.build()


def _from_card(name: str, folder: Path) -> Builtin:
    card = read_card(folder)
    if card is None:
        raise LoadError(f"the {name} checkpoint is missing its model card {folder / CARD_NAME}: reinstall wanlab, "
                        f"or train it again with python -m wanlab.toy.train --out {folder}.")
    return Builtin(name, card.description, folder=folder, native=dict(card.native),
                   max_sequence_length=card.max_sequence_length, fingerprint=card.fingerprint,
                   demo_prompts=card.demo_prompts, vocabulary=card.vocabulary, trained=card.trained)


#: sha256 of the tiny model's weights and vocabulary, built from fixed seeds (tests/test_models.py
#: checks that a build on this machine gives it).
TINY_FINGERPRINT = "aedea0b8717dd26540e3842411403a107e352950ebdbe43638ea525fa02398a7"

TINY = Builtin("tiny", "seeded random weights in the real diffusers Wan classes: every code path in seconds "
               "(tests); its videos are noise", build=_build_tiny,
               native={"width": 128, "height": 128, "num_frames": 33},
               max_sequence_length=512, fingerprint=TINY_FINGERPRINT)
#: The built-ins by name, each read when asked for (a shipped checkpoint's entry from its model card).
BUILTIN_FOLDERS = {"toy": TOY_FOLDER}
BUILTIN_NAMES = ("tiny", *BUILTIN_FOLDERS)


def builtin(name: str) -> Builtin:
    """One built-in model, read from its model card for a shipped checkpoint.

    Args:
        name: One of :data:`BUILTIN_NAMES` (``"tiny"``, ``"toy"``).

    Returns:
        The :class:`Builtin`.

    Raises:
        KeyError: ``name`` is not a built-in.
        wanlab.LoadError: The shipped checkpoint's card is missing or damaged.

    Example:
        >>> builtin("toy").name, builtin("tiny").fingerprint == TINY_FINGERPRINT
        ('toy', True)
    """
    if name == "tiny":
        return TINY
    return _from_card(name, BUILTIN_FOLDERS[name])


def builtins() -> dict[str, Builtin]:
    """The built-in models by name (those whose shipped checkpoint cannot be read are left out).

    Returns:
        ``{name: Builtin}`` in :data:`BUILTIN_NAMES` order.

    Example:
        >>> list(builtins())
        ['tiny', 'toy']
    """
    out = {}
    for name in BUILTIN_NAMES:
        try:
            out[name] = builtin(name)
        except LoadError:
            continue
    return out


def builtin_for_folder(folder: Path) -> Builtin | None:
    """The built-in whose shipped checkpoint is ``folder`` (the same folder by path), if any.

    Args:
        folder: A checkpoint folder.

    Returns:
        The :class:`Builtin`, or ``None`` when ``folder`` is not a shipped checkpoint (or does not exist).

    Raises:
        wanlab.LoadError: It is a shipped checkpoint whose card is damaged.

    Example:
        >>> builtin_for_folder(TOY_FOLDER).name, builtin_for_folder(Path("/nonexistent"))
        ('toy', None)
    """
    for name, shipped in BUILTIN_FOLDERS.items():
        if shipped.exists() and folder.exists() and os.path.samefile(shipped, folder):
            return builtin(name)
    return None
