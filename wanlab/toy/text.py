"""The toy model's text side: a closed-vocabulary T5 tokenizer and Wan's prompt embeddings.

Every caption word is one token (transformers' ``T5Tokenizer`` over a Unigram vocabulary built
offline, with canonical scores so ids and segmentation are the same on every machine); any other
text still tokenizes, into single characters the model never saw.
"""
from __future__ import annotations

from typing import Any

from . import data

#: T5's special tokens (ids 0, 1, 2).
SPECIALS = ("<pad>", "</s>", "<unk>")
#: Single characters after the caption words, so that any text tokenizes.
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'-!?"


def build_tokenizer():
    """Build transformers' ``T5Tokenizer`` over a closed vocabulary: every caption word is one token.

    The vocabulary is T5's specials, every word of :data:`wanlab.toy.data.WORDS` and the single
    characters of :data:`CHARS`. Scores are canonical (words -1 each, characters -10 each), so a
    caption word always wins over spelling it in characters.

    Returns:
        A ``transformers.T5Tokenizer``; it appends ``</s>`` to each text.

    Example:
        >>> len(build_tokenizer()("a red square moving right quickly").input_ids)
        7
    """
    from transformers import T5Tokenizer

    vocab = [(p, 0.0) for p in SPECIALS]
    vocab += [("\u2581" + w, -1.0) for w in data.WORDS]
    vocab += [("\u2581", -10.0)] + [(c, -10.0) for c in CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tokenize(tokenizer: Any, texts: list[str], max_length: int):
    """Token ids and mask exactly as ``WanPipeline._get_t5_prompt_embeds`` makes them.

    Each text is cleaned as diffusers cleans a prompt, then padded or truncated to ``max_length``.

    Args:
        tokenizer: A tokenizer, e.g. from :func:`build_tokenizer`.
        texts: The prompts.
        max_length: Tokens per prompt (the pipeline's ``max_sequence_length``).

    Returns:
        ``(input_ids, attention_mask)``: two ``torch.long`` tensors of shape ``(len(texts), max_length)``.

    Example:
        >>> ids, mask = tokenize(build_tokenizer(), ["a red square", "a blue circle moving left"], 8)
        >>> tuple(ids.shape), mask.sum(dim=1).tolist()
        ((2, 8), [4, 6])
    """
    from ..models.internals import prompt_clean

    out = tokenizer([prompt_clean(t) for t in texts], padding="max_length", max_length=max_length,
                    truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    return out.input_ids, out.attention_mask


def text_embeddings(text_encoder: Any, ids: Any, mask: Any):
    """``WanPipeline``'s prompt embeddings: encoder states, zeros after each prompt's length.

    Args:
        text_encoder: A transformers ``UMT5EncoderModel`` (or any encoder called as ``encoder(ids, mask)``).
        ids: Token ids, ``(batch, length)``, from :func:`tokenize`.
        mask: The attention mask from :func:`tokenize`, same shape.

    Returns:
        A tensor ``(batch, length, d_model)`` in the encoder's dtype, zero where ``mask`` is 0.

    Example:
        >>> ids, mask = tokenize(tokenizer, ["a red square moving right"], 16)  # doctest: +SKIP
        >>> text_embeddings(pipe.text_encoder, ids, mask).shape  # doctest: +SKIP
        torch.Size([1, 16, 32])
    """
    states = text_encoder(ids, mask).last_hidden_state
    return states * mask[..., None].to(states.dtype)
