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
    """transformers' ``T5Tokenizer`` over a closed vocabulary: every caption word is one token.

    Scores are canonical (words -1 each, characters -10 each), so a caption word always wins over
    spelling it in characters.

    >>> len(build_tokenizer()("a red square moving right quickly").input_ids)
    7
    """
    from transformers import T5Tokenizer

    vocab = [(p, 0.0) for p in SPECIALS]
    vocab += [("\u2581" + w, -1.0) for w in data.WORDS]
    vocab += [("\u2581", -10.0)] + [(c, -10.0) for c in CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tokenize(tokenizer: Any, texts: list[str], max_length: int):
    """Token ids and mask exactly as ``WanPipeline._get_t5_prompt_embeds`` makes them."""
    from ..models.internals import prompt_clean

    out = tokenizer([prompt_clean(t) for t in texts], padding="max_length", max_length=max_length,
                    truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    return out.input_ids, out.attention_mask


def text_embeddings(text_encoder: Any, ids: Any, mask: Any):
    """``WanPipeline``'s prompt embeddings: encoder states, zeros after each prompt's length."""
    states = text_encoder(ids, mask).last_hidden_state
    return states * mask[..., None].to(states.dtype)
