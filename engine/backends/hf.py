"""The transformers backend: batched chat generation and per-token losses, on CPU here and CUDA anywhere."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from dataclasses import replace

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList

from engine.backends.base import (
    ENTROPY_EDGES,
    TOP1_EDGES,
    Generation,
    OutputStats,
    RoomNotices,
    Sampling,
    Structured,
    model_context,
    new_token_budgets,
)
from engine.backends.chat import chat_prompt_ids
from engine.backends.embedded import resolve_model_path
from engine.config import ModelConfig

log = logging.getLogger("engine.backends")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Positions of per-token loss computed at once: [chunk x vocab] logits instead of [batch x seq x vocab].
LOSS_CHUNK = 1024


@functools.cache
def fastest_cpu_dtype(size: int = 512, tries: int = 3) -> torch.dtype:
    """float32 or bfloat16, whichever multiplies faster on this CPU: bf16 is ~6x faster where the cores have
    AMX and ~300x slower on AVX2-only cores (both seen on this project's machines), so it is measured. Each
    dtype gets two warm-up products (oneDNN builds its bf16 kernels on the first calls: timing the second alone
    picked float32 on an AMX machine in 6 of 8 fresh processes, and scoring ran 2.7x slower) and the best of
    `tries` timed ones: 23 ms in a fresh process on the 2-core AMX machine, once per process (cached)."""
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size).to(dtype)
        for _ in range(2):
            torch.matmul(a, a)
        best = float("inf")
        for _ in range(tries):
            started = time.perf_counter()
            torch.matmul(a, a)
            best = min(best, time.perf_counter() - started)
        timings[dtype] = best
    choice = min(timings, key=timings.get)
    log.info("dtype=auto on this CPU: %s (%d^3 matmul, best of %d: fp32 %.2g s, bf16 %.2g s)", choice, size, tries,
             timings[torch.float32], timings[torch.bfloat16])
    return choice


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype for a config value; `auto` is bfloat16 on CUDA and the measured faster one on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else fastest_cpu_dtype()
    return DTYPES[name]


def pick_device(requested: str) -> torch.device:
    """`auto` means CUDA when present, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class RowSampler(LogitsProcessor):
    """Temperature + top-p sampling with one random generator per row, so a row's tokens depend on its own
    seed only, not on which rows share its batch (HF's sampler draws the whole batch from one global RNG).

    It returns 0 for the drawn token and -inf elsewhere, and generate() runs greedy on top of it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            # Drop a token when the mass before it already reaches top_p (the most likely one always stays).
            drop = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= self.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        chosen = torch.stack([
            torch.multinomial(row, 1, generator=gen) for row, gen in zip(probs, self.generators)
        ]).squeeze(-1)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device), chosen] = 0.0
        return out


class OutputSpaceRecorder(LogitsProcessor):
    """Observes the raw logits at every generation step (placed before the sampler, returns them unchanged) and
    adds each still-running row's top-1 probability and entropy to fixed-bin histograms: streamed, so no
    [steps x batch x vocab] tensor is kept."""

    def __init__(self, rows: int, eos_id: int | None, device: torch.device):
        self.eos_id = eos_id
        self.top1_edges = torch.tensor(TOP1_EDGES[1:-1], dtype=torch.float32, device=device)
        self.entropy_edges = torch.tensor(ENTROPY_EDGES[1:-1], dtype=torch.float32, device=device)
        self.top1 = torch.zeros((rows, len(TOP1_EDGES) - 1), dtype=torch.int64, device=device)
        self.entropy = torch.zeros((rows, len(ENTROPY_EDGES) - 1), dtype=torch.int64, device=device)
        self.top1_sum = torch.zeros(rows, dtype=torch.float64, device=device)
        self.entropy_sum = torch.zeros(rows, dtype=torch.float64, device=device)
        self.positions = torch.zeros(rows, dtype=torch.int64, device=device)
        self.running = torch.ones(rows, dtype=torch.bool, device=device)
        self.first_step = True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.first_step:
            self.first_step = False
        elif self.eos_id is not None:  # a row that emitted EOS is finished: HF keeps padding it
            self.running &= input_ids[:, -1] != self.eos_id
        logp = torch.log_softmax(scores.float(), dim=-1)
        probs = logp.exp()
        top1 = probs.max(dim=-1).values
        entropy = -(probs * logp).nan_to_num().sum(dim=-1)
        live = self.running.long()
        rows = torch.arange(scores.shape[0], device=scores.device)
        self.top1[rows, torch.bucketize(top1, self.top1_edges, right=True)] += live
        self.entropy[rows, torch.bucketize(entropy, self.entropy_edges, right=True)] += live
        self.top1_sum += top1.double() * live
        self.entropy_sum += entropy.double() * live
        self.positions += live
        return scores

    def stats(self, row: int) -> OutputStats:
        return OutputStats(self.top1[row].cpu().numpy(), self.entropy[row].cpu().numpy(),
                           float(self.top1_sum[row]), float(self.entropy_sum[row]), int(self.positions[row]))


class GrammarCache:
    """xgrammar's compiler for one tokenizer and the grammars it compiled, one per Structured value: a stage
    compiles its grammar once and every batch after it only builds matchers (xgrammar.contrib.hf's processor)."""

    def __init__(self, tokenizer, vocab_size: int, eos_id: int | None):
        import xgrammar

        self.xgrammar = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=[eos_id] if eos_id is not None else None)
        self.compiler = xgrammar.GrammarCompiler(info)
        self.compiled: dict[Structured, object] = {}

    def grammar(self, structured: Structured):
        if structured not in self.compiled:
            if structured.json_schema is not None:
                # Compact JSON, as vLLM's engine is configured (vllm_config: disable_any_whitespace).
                self.compiled[structured] = self.compiler.compile_json_schema(structured.json_schema,
                                                                              any_whitespace=False)
            else:
                self.compiled[structured] = self.compiler.compile_regex(structured.regex)
        return self.compiled[structured]

    def processor(self, structured: Structured) -> LogitsProcessor:
        """A fresh logits processor (one matcher per row; xgrammar's processor serves one generate() only)."""
        from xgrammar.contrib.hf import LogitsProcessor as GrammarProcessor

        return GrammarProcessor(self.grammar(structured))


class HFBackend:
    """A transformers causal LM behind the Backend protocol."""

    def __init__(self, model: ModelConfig, torch_threads: int | None = None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.name = model.name
        self.config = model
        self.path = resolve_model_path(model)
        self.device = pick_device(model.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.dtype = resolve_dtype(model.dtype, self.device)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype).to(self.device)
        self.model.eval()
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id
        self.bos_id = self.tokenizer.bos_token_id
        self.max_model_len = model_context(model.name, model.max_model_len,
                                           getattr(self.model.config, "max_position_embeddings", None))
        self.room = RoomNotices(model.name, self.max_model_len)
        self._grammars: GrammarCache | None = None  # built on the first structured call

    def grammars(self) -> GrammarCache:
        if self._grammars is None:
            self._grammars = GrammarCache(self.tokenizer, self.model.get_output_embeddings().weight.shape[0],
                                          self.eos_id)
        return self._grammars

    def chat_ids(self, prompt: str) -> list[int]:
        """Token ids of a single-user-turn chat with the generation prompt: the template applied once, to ids
        (recipe.fidelity.double_bos reproduces the seed's second BOS)."""
        return chat_prompt_ids(self.tokenizer, prompt, self.config.double_bos)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None,
                 structured: Structured | None = None) -> list[Generation]:
        """Complete each prompt; similar lengths are batched together and left-padded. `seeds[i]` drives prompt
        i's sampling alone (default: its position), so outputs do not depend on how rows were batched.
        `structured` masks every step to the tokens its grammar allows (xgrammar), before sampling.

        A row whose prompt leaves less room than `max_new_tokens` generates up to that room (new_token_budgets);
        only rows of one budget share a batch, so no left-padded row runs past the context."""
        seeds = list(range(len(prompts))) if seeds is None else list(seeds)
        encoded = [self.chat_ids(p) for p in prompts]
        results, budgets = new_token_budgets(encoded, self.max_model_len, sampling.max_new_tokens)
        self.room.check(encoded, budgets, sampling.max_new_tokens)
        fits = sorted((i for i, budget in enumerate(budgets) if budget), key=lambda i: len(encoded[i]))
        step = max(1, self.config.max_batch_size)
        for budget, rows in itertools.groupby(fits, key=lambda i: budgets[i]):
            rows = list(rows)
            for start in range(0, len(rows), step):
                chunk = rows[start:start + step]
                batch = self._generate_batch([encoded[i] for i in chunk], replace(sampling, max_new_tokens=budget),
                                             [seeds[i] for i in chunk], structured)
                for i, generation in zip(chunk, batch):
                    results[i] = generation
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_batch(self, batch_ids: list[list[int]], sampling: Sampling, seeds: list[int],
                        structured: Structured | None = None) -> list[Generation]:
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        settings = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, do_sample=False, eos_token_id=self.eos_id, pad_token_id=self.pad_id
        )
        processors = LogitsProcessorList()
        recorder = None
        if sampling.output_stats:  # first: it sees the raw logits, before the sampler replaces them
            recorder = OutputSpaceRecorder(len(batch_ids), self.eos_id, self.device)
            processors.append(recorder)
        if structured is not None:  # before the sampler: it draws from the allowed tokens only
            processors.append(self.grammars().processor(structured))
        if not sampling.greedy:
            processors.append(RowSampler(seeds, sampling.temperature, sampling.top_p, self.device))
        out = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), generation_config=settings,
            logits_processor=processors,
        )
        new_tokens = out[:, width:].cpu().tolist()
        generations = []
        for row, (ids, tokens) in enumerate(zip(batch_ids, new_tokens)):
            stopped = self.eos_id in tokens
            if stopped:
                tokens = tokens[: tokens.index(self.eos_id)]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            generations.append(Generation(
                text, len(ids), len(tokens) + int(stopped), "stop" if stopped else "length",
                stats=recorder.stats(row) if recorder else None,
            ))
        return generations

    @torch.inference_mode()
    def token_losses(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """Cross-entropy of every token given its prefix (len - 1 values per sequence), in float32.

        Sequences of similar length share a right-padded forward pass; logits are formed only at real
        positions and in chunks, so no [batch x seq x vocab] tensor is ever materialised."""
        losses: list[np.ndarray | None] = [None] * len(sequences)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        decoder = self.model.get_decoder()
        head = self.model.get_output_embeddings()
        step = max(1, self.config.max_batch_size)
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            width = max(len(sequences[i]) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                attention[row, : len(sequences[i])] = 1
            hidden = decoder(input_ids=ids.to(self.device), attention_mask=attention.to(self.device)).last_hidden_state
            # Position t predicts token t+1: keep positions whose next token is real.
            predict = attention[:, 1:].bool()
            states = hidden[:, :-1][predict.to(self.device)]
            targets = ids[:, 1:][predict].to(self.device)
            flat = torch.empty(targets.shape[0], dtype=torch.float32)
            for lo in range(0, targets.shape[0], LOSS_CHUNK):
                logits = head(states[lo:lo + LOSS_CHUNK]).float()
                flat[lo:lo + LOSS_CHUNK] = torch.nn.functional.cross_entropy(
                    logits, targets[lo:lo + LOSS_CHUNK], reduction="none"
                ).cpu()
            counts = predict.sum(dim=1).tolist()
            pieces = torch.split(flat, counts)
            for i, piece in zip(chunk, pieces):
                losses[i] = piece.numpy()
        return losses  # type: ignore[return-value]

    def engine_stats(self) -> None:
        """Static batches: no engine occupancy to report."""
        return None


def default_threads() -> int:
    """All cores of this node: Ray would otherwise give an actor only as many threads as CPUs it reserves."""
    return os.cpu_count() or 1
