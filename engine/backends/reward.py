"""The reward backend (load_backend kind="reward"): a local sequence-classification model with a one-label head
(analysis.reward.path), loaded the way every model is (a local directory, never the hub) and scored in padded
batches."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine.backends.embedded import resolve_model_path
from engine.backends.hf import pick_device
from engine.config import ModelConfig


class RewardModel:
    """A reward model and its tokenizer on one device: the chat's token ids in, logit 0 of the head out."""

    def __init__(self, model: ModelConfig, torch_threads: int | None = None):
        local = resolve_model_path(model)
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.name = model.name
        self.device = pick_device("auto")
        self.tokenizer = AutoTokenizer.from_pretrained(local)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(local, num_labels=1, dtype=dtype)
        self.model.to(self.device).eval()

    def chat_ids(self, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
        """Token ids of the two-turn chat (the template applied once, cut at `max_length`) and the response's own
        token count."""
        encoded = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=True)
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        response_tokens = len(self.tokenizer(response, add_special_tokens=False)["input_ids"])
        return [int(i) for i in ids][:max_length], response_tokens

    @torch.inference_mode()
    def score(self, sequences: list[list[int]], batch_size: int) -> list[float]:
        """Reward of each token sequence, `batch_size` at a time (right-padded, attention-masked)."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[float] = []
        step = max(1, batch_size)
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

    def engine_stats(self) -> None:
        """Static batches: no engine occupancy to report."""
        return None
