"""What a model trained on a closed world knows: its words and the size it was trained at.

Holds :class:`Scope` (read from a model card by :func:`scope_of`) and the warnings the pipeline gives
with it (:func:`prompt_message`, :func:`size_message`: :class:`~wanlab.errors.PromptWarning`,
:class:`~wanlab.errors.TrainedSizeWarning`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .registry import BUILTIN_NAMES, builtin, read_card

#: Punctuation a caption word may carry (stripped before the word is looked up).
_PUNCTUATION = ".,;:!?'\"()"


@dataclass(frozen=True)
class Scope:
    """A model's closed vocabulary (by kind of word) and trained size; empty ones mean "anything".

    A checkpoint's model card (``wanlab.json``) may declare a ``vocabulary`` (its caption words, by
    kind) and a ``trained`` size; the built-in ``toy`` declares both (5 colours, 3 shapes, 4
    directions, slowly / quickly / standing still; 64x64, 17 frames). Outside them the model still
    runs, but what comes out says little: an unknown word is spelled in characters it never saw as a
    word, and away from its trained size colours and shapes break down (a yellow triangle comes out
    green at 48x48x9). A scope names what is outside.

    Attributes:
        vocabulary: Words by kind (``{"colours": ("red", ...), "motion": ("moving", "standing still")}``).
        trained: The trained ``width``, ``height`` and ``num_frames`` (those declared).

    Example:
        >>> Scope({"colours": ("red",), "shapes": ("square",), "other": ("a",)}).unknown_words("a red fox")
        ['fox']
    """

    vocabulary: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    trained: Mapping[str, int] = field(default_factory=dict)

    @property
    def words(self) -> frozenset[str]:
        """Every single word of the vocabulary (entries of several words count word by word).

        Example:
            >>> sorted(Scope({"motion": ("moving", "standing still")}).words)
            ['moving', 'standing', 'still']
        """
        return frozenset(w for entries in self.vocabulary.values() for entry in entries for w in entry.split())

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` outside the vocabulary, in order, each once (none without a vocabulary).

        Case counts: a model that saw "red" alone spells "Red" in characters. Punctuation around a word
        is stripped first.

        Args:
            text: A prompt.

        Returns:
            The unknown words; ``[]`` when the scope has no vocabulary.

        Example:
            >>> scope = Scope({"colours": ("red",), "shapes": ("square",), "other": ("a",)})
            >>> scope.unknown_words("a Red square, a red fox, a red fox."), Scope().unknown_words("anything")
            (['Red', 'fox'], [])
        """
        if not self.vocabulary:
            return []
        known, out = self.words, []
        for raw in text.split():
            word = raw.strip(_PUNCTUATION)
            if word and word not in known and word not in out:
                out.append(word)
        return out

    def off_size(self, params: Any) -> dict[str, tuple[int, int]]:
        """The trained-size fields ``params`` differs in: ``{field: (asked, trained)}``.

        Args:
            params: A request (:class:`wanlab.Params`, or anything with ``width``, ``height``,
                ``num_frames``).

        Returns:
            One entry per declared field the request differs in; ``{}`` at the trained size.

        Example:
            >>> from wanlab import Params
            >>> scope = Scope(trained={"width": 64, "height": 64, "num_frames": 17})
            >>> scope.off_size(Params(prompt="a red square", width=48, height=64, num_frames=17))
            {'width': (48, 64)}
        """
        return {name: (getattr(params, name), value) for name, value in self.trained.items()
                if getattr(params, name) != value}

    def describe(self) -> str:
        """One line: the vocabulary by kind and the trained size (empty when the model declares neither).

        Returns:
            The description.

        Example:
            >>> Scope({"colours": ("red", "blue")}, {"width": 64, "height": 64, "num_frames": 17}).describe()
            'colours: red, blue; trained at 64x64, 17 frames'
        """
        parts = [f"{kind}: {', '.join(words)}" for kind, words in self.vocabulary.items()]
        if self.trained:
            parts.append("trained at " + size_text(self.trained))
        return "; ".join(parts)


def size_text(fields: Mapping[str, int]) -> str:
    """``64x64, 17 frames`` from ``width``/``height``/``num_frames`` (those present).

    Args:
        fields: Some of ``width``, ``height``, ``num_frames``.

    Returns:
        The size in words; the width and height show only together.

    Example:
        >>> size_text({"width": 64, "height": 64, "num_frames": 17}), size_text({"num_frames": 9})
        ('64x64, 17 frames', '9 frames')
    """
    out = f"{fields['width']}x{fields['height']}" if "width" in fields and "height" in fields else ""
    if "num_frames" in fields:
        out = f"{out}, {fields['num_frames']} frames" if out else f"{fields['num_frames']} frames"
    return out


def scope_of(model_id: str, source: str) -> Scope:
    """The scope a built-in or a carded folder declares (an empty one for anything else).

    Args:
        model_id: A built-in's name, or a folder's path.
        source: How the model was named: ``"builtin"`` or ``"folder"`` (any other gives an empty scope).

    Returns:
        The :class:`Scope` of its model card.

    Raises:
        wanlab.LoadError: The built-in's or folder's model card is damaged.

    Example:
        >>> sorted(scope_of("toy", "builtin").vocabulary)[:2]
        ['colours', 'directions']
        >>> scope_of("/nonexistent", "folder")
        Scope(vocabulary={}, trained={})
    """
    if source == "builtin" and model_id in BUILTIN_NAMES:
        spec = builtin(model_id)
        return Scope(dict(spec.vocabulary), dict(spec.trained))
    if source == "folder":
        from pathlib import Path

        card = read_card(Path(model_id)) if Path(model_id).is_dir() else None
        if card is not None:
            return Scope(dict(card.vocabulary), dict(card.trained))
    return Scope()


def prompt_message(model_id: str, field_name: str, unknown: list[str], scope: Scope) -> str:
    """The warning for words outside the vocabulary, naming them and what the model knows.

    Args:
        model_id: The model's name, as the message shows it.
        field_name: The request field the words are in (``"prompt"``, ``"negative_prompt"``).
        unknown: The words, from :meth:`Scope.unknown_words`.
        scope: The model's scope.

    Returns:
        The message (a hint is added for words the model knows in lower case).

    Example:
        >>> scope = Scope({"colours": ("red",), "other": ("a",)})
        >>> print(prompt_message("toy", "prompt", ["Red"], scope))  # doctest: +ELLIPSIS
        prompt has words the toy model never saw: 'Red' (it knows lower-case words only: red); ... It knows colours: red
    """
    lower = [w for w in unknown if w.lower() in scope.words]
    hint = f" (it knows lower-case words only: {', '.join(w.lower() for w in lower)})" if lower else ""
    known = "; ".join(f"{kind}: {', '.join(words)}" for kind, words in scope.vocabulary.items() if kind != "other")
    return (f"{field_name} has words the {model_id} model never saw: {', '.join(repr(w) for w in unknown)}{hint}; "
            f"they are spelled in characters and steer the video in no known way. It knows {known}")


def size_message(model_id: str, asked: Mapping[str, int], scope: Scope) -> str:
    """The warning for a request away from the trained size.

    Args:
        model_id: The model's name, as the message shows it.
        asked: The request's size fields (``width``, ``height``, ``num_frames``).
        scope: The model's scope (its ``trained`` size).

    Returns:
        The message, naming both sizes and how to run at the trained one.

    Example:
        >>> scope = Scope(trained={"width": 64, "height": 64, "num_frames": 17})
        >>> size_message("toy", {"width": 48, "height": 48, "num_frames": 9}, scope)  # doctest: +ELLIPSIS
        'the toy model was trained at 64x64, 17 frames; this request is 48x48, 9 frames, where ...'
    """
    return (f"the {model_id} model was trained at {size_text(scope.trained)}; this request is "
            f"{size_text(asked)}, where its colours and shapes break down (a yellow triangle came out green "
            "at 48x48, 9 frames); leave width, height and num_frames unset to run at its own size")


