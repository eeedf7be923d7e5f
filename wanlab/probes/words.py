"""The prompt's words and the text tokens each is made of: tokenizer pieces merged into words.

Wan's UMT5 tokenizer and the built-in models' Unigram tokenizers are SentencePiece-style: a piece
that starts a word carries the ``▁`` marker (``"▁sq" "uare"`` is one word, ``square``). Pieces
without a letter or digit (punctuation) and special tokens (``</s>``, ``<pad>``) belong to no word.
A word that occurs twice owns the tokens of both occurrences. Matching is case-insensitive.
"""
from __future__ import annotations

from typing import Any

MARK = "\u2581"  # SentencePiece's word-start marker


def merge_pieces(pieces: list[str], special: set[str] | frozenset[str] = frozenset()) -> dict[str, list[int]]:
    """``{word: token positions}`` in order of first occurrence, from a tokenizer's pieces.

    Args:
        pieces: The tokenizer's pieces, in order.
        special: Special tokens (they belong to no word).

    Returns:
        Word (lower case) to its token positions.

    Example:
        >>> merge_pieces(["▁a", "▁re", "d", "▁s", "qua", "re", ",", "</s>"], {"</s>"})
        {'a': [0], 'red': [1, 2], 'square': [3, 4, 5]}
    """
    words: dict[str, list[int]] = {}
    current: list[int] = []
    text = ""

    def close() -> None:
        nonlocal current, text
        word = text.lower()
        if word and any(ch.isalnum() for ch in word):
            words.setdefault(word, []).extend(current)
        current, text = [], ""

    for index, piece in enumerate(pieces):
        if piece in special:
            close()
            continue
        starts = piece.startswith(MARK)
        body = piece.lstrip(MARK)
        if body and not any(ch.isalnum() for ch in body):  # punctuation ends a word and is none itself
            close()
            continue
        if starts:
            close()
        current.append(index)
        text += body
    close()
    return words


def prompt_words(tokenizer: Any, prompt: str, max_length: int) -> dict[str, list[int]]:
    """The words of ``prompt`` as the model reads it.

    Cleaned as diffusers cleans it, tokenized with the end token and cut at ``max_length`` tokens (a
    word past the cut is not read, so not listed).

    Args:
        tokenizer: The pipeline's tokenizer.
        prompt: The prompt.
        max_length: The text length the model reads.

    Returns:
        Word to its token positions (see :func:`merge_pieces`).

    Example:
        >>> prompt_words(pipe.tokenizer, "a red square", 512)  # doctest: +SKIP
        {'a': [0], 'red': [1], 'square': [2, 3]}
    """
    from ..models.internals import prompt_clean

    ids = tokenizer(prompt_clean(prompt), add_special_tokens=True, truncation=True, max_length=max_length).input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return merge_pieces(pieces, set(getattr(tokenizer, "all_special_tokens", ()) or ()))
