"""The `tiny` test model: a random Llama and a byte-level BPE tokenizer, built locally from a seed."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from engine.backends.base import BackendUnavailable
from engine.backends.cache import build_once, cache_root

VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, like SmolLM2's template but without a default system prompt. <|im_start|> is the BOS: it is the
# first token of every templated prompt and the tokenizer itself adds none.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ARCHITECTURE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=8192,  # SmolLM2-135M's context: conf/model/tiny*.yaml and the schema default say the same
    tie_word_embeddings=True,
    # Wider than the default 0.02: with tiny weights a random model's greedy decoding repeats one token
    # (often "\n", which strips to an empty answer); 0.2 gives varied text, so tests see real rows flow.
    initializer_range=0.2,
)
# `tiny_wide`: the same recipe twice as wide and deep (~7x the parameters, still ~1M), so sweeps and evolver
# comparisons on CPU have a genuinely different, larger model to set against `tiny`.
ARCHITECTURES = {
    "tiny": ARCHITECTURE,
    "tiny_wide": {**ARCHITECTURE, "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4},
}


def _corpus() -> list[str]:
    """Text the package ships: the tokenizer corpus and the demo seeds."""
    data = resources.files("engine") / "data"
    return [(data / "tiny_corpus.txt").read_text("utf-8"), (data / "demo_seeds.jsonl").read_text("utf-8")]


def _build(seed: int, architecture: dict, target: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **architecture,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def ensure_tiny(seed: int = 0, variant: str = "tiny") -> Path:
    """The cached tiny model (`variant`: tiny | tiny_wide) for `seed`, built on first use (a few seconds)."""
    if variant not in ARCHITECTURES:
        raise BackendUnavailable(f"embedded={variant!r} is not a tiny model; choose one of: {', '.join(ARCHITECTURES)}")
    architecture = ARCHITECTURES[variant]
    recipe = json.dumps([_corpus(), SPECIAL_TOKENS, CHAT_TEMPLATE, architecture, VOCAB_SIZE], sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return build_once(cache_root() / f"{variant}-{key}-seed{seed}", lambda tmp: _build(seed, architecture, tmp))
