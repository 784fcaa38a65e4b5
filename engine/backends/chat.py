"""Chat prompts as token ids: the template applied once, to ids, so no engine adds a second BOS."""

from __future__ import annotations

from collections.abc import Mapping


def chat_prompt_ids(tokenizer, prompt: str, double_bos: bool = False) -> list[int]:
    """Token ids of a single-user-turn chat with the generation prompt.

    Default: the template rendered straight to ids (its own BOS, if it writes one, is the only one).
    `double_bos=True` reproduces the seed's path (vLLM 0.6.3): the template rendered to text, then tokenized
    with special tokens, so a tokenizer that adds BOS (Llama-3) puts a second <|begin_of_text|> in front."""
    chat = [{"role": "user", "content": prompt}]
    if double_bos:
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]
    encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    ids = [int(i) for i in (encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)]
    bos = tokenizer.bos_token_id
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]  # a template that writes BOS rendered by a tokenizer that adds one: keep one
    return ids
