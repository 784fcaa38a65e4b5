"""Reward of each evolution step (paper Table 14) by a sequence-classification reward model given by local path.

The scored chat is [user: the evolution meta-prompt, assistant: the evolved instruction]. The meta-prompt is
rebuilt from the row's *parent* instruction with the row's own method, fixing the research code's bug (it rebuilt
it from the evolved instruction, so prompt and response were the same text). The raw score and the response's
token count are stored; length normalisation (`analysis.reward.length_norm`) needs the dataset's mean length, so
the analysis summary applies it."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine.backends.hf import pick_device
from engine.config import Config
from engine.prompts.auto_evol import BASE_INSTRUCTION
from engine.prompts.evol import evolution_prompt, method_order
from engine.records import ok_mask

LENGTH_NORMS = ("none", "divide", "multiply")


def meta_prompt(method: str, parent_instruction: str) -> str | None:
    """The prompt that produced an evolved row, from its method and parent; None for a row that was not evolved
    by a known method (a seed row, or an unknown method name)."""
    if not parent_instruction:
        return None
    if method == "auto_evol":
        return BASE_INSTRUCTION + parent_instruction
    if method in method_order(True):
        return evolution_prompt(method, parent_instruction)
    return None


def adjust(scores: np.ndarray, tokens: np.ndarray, mode: str) -> np.ndarray:
    """Length-adjusted rewards over one dataset. divide: score / tokens * mean tokens (the research code's
    sequence-classification branch: penalises length); multiply: score * tokens / mean tokens (its InternLM
    branch: rewards length); none: unchanged."""
    if mode not in LENGTH_NORMS:
        raise ValueError(f"analysis.reward.length_norm={mode!r}: choose one of {', '.join(LENGTH_NORMS)}")
    scores = np.asarray(scores, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    valid = np.isfinite(scores) & (tokens > 0)
    if mode == "none" or not valid.any():
        return scores
    mean = tokens[valid].mean()
    out = np.full_like(scores, np.nan)
    out[valid] = scores[valid] / tokens[valid] * mean if mode == "divide" else scores[valid] * tokens[valid] / mean
    return out


class Reward:
    """Scores each ok evolved row with the reward model at `analysis.reward.path` (logit 0 of a one-label head)."""

    uses_model = True

    def __init__(self, cfg: Config, torch_threads: int | None = None):
        settings = cfg.analysis.reward
        adjust(np.zeros(1), np.ones(1), settings.length_norm)  # a wrong mode fails at start-up
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.settings = settings
        self.device = pick_device("auto")
        self.tokenizer = AutoTokenizer.from_pretrained(settings.path)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(settings.path, num_labels=1, dtype=dtype)
        self.model.to(self.device).eval()
        self.name = settings.path

    def chat_ids(self, prompt: str, response: str) -> tuple[list[int], int]:
        """Token ids of the two-turn chat (the template applied once) and the response's own token count."""
        encoded = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=True)
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        response_tokens = len(self.tokenizer(response, add_special_tokens=False)["input_ids"])
        return [int(i) for i in ids][: self.settings.max_length], response_tokens

    @torch.inference_mode()
    def score(self, sequences: list[list[int]]) -> list[float]:
        """Reward of each token sequence, in batches (right-padded, attention-masked)."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[float] = []
        step = max(1, self.settings.batch_size)
        for start in range(0, len(sequences), step):
            chunk = sequences[start:start + step]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(chunk):
                ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            if self.model.config.pad_token_id is None:
                self.model.config.pad_token_id = pad  # the head finds each row's last real token by it
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            out += logits[:, 0].float().cpu().tolist()
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        batch["reward"] = np.full(n, np.nan)
        batch["reward_tokens"] = np.zeros(n, dtype=np.int64)
        todo, sequences = [], []
        for i in np.flatnonzero(ok_mask(batch)):
            prompt = meta_prompt(str(batch["method"][i]), str(batch["parent_instruction"][i]))
            if prompt is None:
                continue
            ids, tokens = self.chat_ids(prompt, str(batch["instruction"][i]))
            todo.append(i)
            sequences.append(ids)
            batch["reward_tokens"][i] = tokens
        for i, value in zip(todo, self.score(sequences) if sequences else []):
            batch["reward"][i] = value
        return batch
