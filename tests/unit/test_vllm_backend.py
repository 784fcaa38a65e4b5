"""The vLLM backend without vLLM: config mapping on CPU and GPU, chat ids with one BOS, prompt logprobs as the HF
backend's per-token losses, the model configs, and the start-up errors a user sees. tests/vllm_tier runs vLLM itself."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from engine.backends import BackendUnavailable, Sampling, load_backend
from engine.backends import vllm_config as vc
from engine.backends.chat import chat_prompt_ids
from engine.config import ClusterConfig, Config, ConfigError, ModelConfig, to_config
from engine.stages.scoring.score import span_losses

CONF = Path(__file__).resolve().parents[2] / "conf"
INSTALLED_PLATFORM = vc.installed_platform  # the real one: start-up tests below pretend to a GPU build


def vllm_model(**overrides) -> ModelConfig:
    settings = dict(name="qwen2.5-7b-instruct", path="/models/Qwen2.5-7B-Instruct", embedded=None, backend="vllm",
                    dtype="bfloat16", max_model_len=8192)
    return ModelConfig(**{**settings, **overrides})


# --- engine and sampling settings ---------------------------------------------------------------------------

def test_engine_kwargs_carry_every_model_setting():
    model = vllm_model(tensor_parallel=4, pipeline_parallel=2, gpu_memory_utilization=0.85,
                       max_num_batched_tokens=4096, max_num_seqs=128, enforce_eager=True, seed=7)
    kwargs = vc.engine_kwargs(model, "/models/Qwen2.5-7B-Instruct", actor_num_gpus=8)
    assert kwargs == {
        "model": "/models/Qwen2.5-7B-Instruct", "tokenizer": "/models/Qwen2.5-7B-Instruct", "dtype": "bfloat16",
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "distributed_executor_backend": "mp",
        "max_model_len": 8192, "gpu_memory_utilization": 0.85, "enforce_eager": True, "seed": 7,
        "logprobs_mode": "raw_logprobs", "enable_prefix_caching": True, "max_num_batched_tokens": 4096,
        "max_num_seqs": 128,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    defaults = vc.engine_kwargs(vllm_model(), "/m")
    assert "max_num_batched_tokens" not in defaults and "max_num_seqs" not in defaults  # vLLM's own defaults


@pytest.mark.parametrize("tp, pp, gpus, executor", [
    (1, 1, 1, "uni"), (1, 1, 0.5, "uni"), (4, 1, 4, "mp"), (2, 2, 8, "mp"), (4, 1, 0, "ray"), (1, 1, 0, "ray"),
])
def test_executor_follows_the_gpus_the_actor_holds(tp, pp, gpus, executor):
    assert vc.executor_backend(vllm_model(tensor_parallel=tp, pipeline_parallel=pp), gpus) == executor


@pytest.mark.parametrize("tp, gpus, executor", [(1, 0, "uni"), (1, 1, "uni"), (2, 0, "mp")])
def test_on_cpu_vllm_runs_in_the_actor_never_through_ray(tp, gpus, executor):
    # vLLM's CPU platform has no Ray executor ("current platform cpu does not support ray").
    assert vc.executor_backend(vllm_model(tensor_parallel=tp), gpus, platform="cpu") == executor


def test_cpu_engines_run_eagerly_with_their_kv_cache_from_config():
    kwargs = vc.engine_kwargs(vllm_model(enforce_eager=False), "/m", actor_num_gpus=0, platform="cpu")
    assert kwargs["distributed_executor_backend"] == "uni" and kwargs["enforce_eager"] is True
    assert vc.engine_kwargs(vllm_model(enforce_eager=False), "/m")["enforce_eager"] is False  # CUDA graphs on GPU
    assert kwargs["kv_cache_memory_bytes"] == 2 * 2**30  # the default: three engines fit a 24 GiB box
    assert "kv_cache_memory_bytes" not in vc.engine_kwargs(vllm_model(), "/m")  # GPUs: gpu_memory_utilization
    assert vc.cpu_kvcache_bytes(vllm_model(cpu_kvcache_gib=1.5)) == 3 * 2**29
    with pytest.raises(ConfigError, match=r"scorer.cpu_kvcache_gib=0"):
        vc.cpu_kvcache_bytes(vllm_model(cpu_kvcache_gib=0), key="scorer")
    # One core stays with vLLM's scheduler by default (its own choice); 0 pins compute threads to every core.
    assert vc.cpu_environment(vllm_model()) == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    assert vc.cpu_environment(vllm_model(cpu_reserved_cores=0)) == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    with pytest.raises(ConfigError, match=r"scorer.cpu_reserved_cores=-1"):
        vc.cpu_environment(vllm_model(cpu_reserved_cores=-1), key="scorer")


def test_the_platform_comes_from_the_installed_distribution(monkeypatch):
    import importlib.metadata as md

    def installed(*names, version="0.29.0"):
        def installed_version(name):
            if name not in names:
                raise md.PackageNotFoundError(name)
            return version
        monkeypatch.setattr(md, "version", installed_version)

    installed("vllm-cpu")
    assert INSTALLED_PLATFORM() == "cpu"
    installed("vllm", version="0.29.0+cpu")
    assert INSTALLED_PLATFORM() == "cpu"
    installed("vllm")
    assert INSTALLED_PLATFORM() == "cuda"
    installed()
    assert INSTALLED_PLATFORM() == "cuda"


def test_an_engine_larger_than_its_actor_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"scorer.tensor_parallel=4 .* cluster.actor_num_gpus=4"):
        vc.executor_backend(vllm_model(tensor_parallel=4), 2, key="scorer")


def test_visible_gpus_reads_what_ray_granted():
    assert vc.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == 2
    assert vc.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert vc.visible_gpus({}) is None


def test_unknown_dtype_names_the_key():
    with pytest.raises(ConfigError, match="scorer.dtype='fp8'"):
        vc.engine_kwargs(vllm_model(dtype="fp8"), "/m", key="scorer")


def test_sampled_rows_carry_their_own_seed_and_stops():
    kwargs = vc.sampling_kwargs(Sampling(temperature=0.7, top_p=0.95, max_new_tokens=256), 1234, ["###"])
    assert kwargs == {"max_tokens": 256, "temperature": 0.7, "top_p": 0.95, "skip_special_tokens": True,
                      "seed": 1234, "stop": ["###"]}


def test_greedy_rows_need_no_seed_and_no_nucleus():
    kwargs = vc.sampling_kwargs(Sampling(temperature=0.0, top_p=0.5, max_new_tokens=512), 99)
    assert kwargs == {"max_tokens": 512, "temperature": 0.0, "top_p": 1.0, "skip_special_tokens": True}


def test_scoring_requests_read_the_raw_distribution():
    kwargs = vc.scoring_sampling_kwargs()
    assert kwargs["max_tokens"] == 1 and kwargs["prompt_logprobs"] == 0
    assert kwargs["temperature"] == 1.0 and kwargs["top_p"] == 1.0 and "top_k" not in kwargs
    assert vc.engine_kwargs(vllm_model(), "/m")["logprobs_mode"] == "raw_logprobs"


# --- chat templates to ids, one BOS ---------------------------------------------------------------------------

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def llama3_like_tokenizer():
    """A tokenizer that adds <|begin_of_text|> itself and a template that writes it too: Llama-3's pair."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    words = ["user", "assistant", "Name", "a", "colour.", "\n\n"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.add_special_tokens(specials)
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   unk_token="<unk>", chat_template=LLAMA3_TEMPLATE)


def test_chat_template_to_ids_gives_a_single_bos(llama3_like_tokenizer):
    tok = llama3_like_tokenizer
    ids = chat_prompt_ids(tok, "Name a colour.")
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["<|start_header_id|>", "user"]


def test_double_bos_switch_reproduces_the_seeds_prompt(llama3_like_tokenizer):
    tok = llama3_like_tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                   tokenize=False)
    seed_ids = tok(text)["input_ids"]  # vLLM 0.6.3: the templated string tokenized with special tokens
    doubled = chat_prompt_ids(tok, "Name a colour.", double_bos=True)
    assert doubled == seed_ids
    assert doubled[:2] == [tok.bos_token_id, tok.bos_token_id]
    assert doubled[1:] == chat_prompt_ids(tok, "Name a colour.")


def test_fidelity_switch_reaches_the_generators_only():
    cfg = to_config({"run": {"output_dir": "out"}, "recipe": {"fidelity": {"double_bos": True}}})
    assert cfg.model.double_bos is True and cfg.scorer.double_bos is False
    assert to_config({"run": {"output_dir": "out"}}).model.double_bos is False


# --- prompt logprobs -> per-token losses -------------------------------------------------------------------------

@dataclass
class Logprob:  # the shape of vllm.sequence.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def vllm_prompt_logprobs(logits: torch.Tensor, ids: list[int], top_k: int) -> list:
    """What vLLM returns for a prompt: None, then per position a dict with the actual token and the top-k."""
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    out: list = [None]
    for j in range(1, len(ids)):
        row = logprobs[j - 1]
        keep = set(torch.topk(row, top_k).indices.tolist()) | {ids[j]}
        out.append({t: Logprob(float(row[t]), rank=1) for t in keep})
    return out


@pytest.fixture(scope="module")
def tiny_hf(tiny_model):
    from engine.backends.hf import HFBackend

    return HFBackend(tiny_model, torch_threads=2)


def test_prompt_logprobs_give_the_hf_backends_losses_and_spans(tiny_hf):
    from engine.stages.scoring.score import build_spans

    spans = build_spans(tiny_hf.tokenizer, tiny_hf.bos_id, "Name three rivers in Europe.", "",
                        "The Danube, the Rhine and the Loire.")
    sequences = [spans.qa_ids, spans.a_ids]
    expected = tiny_hf.token_losses(sequences)
    got = []
    for ids in sequences:
        with torch.inference_mode():
            logits = tiny_hf.model(torch.tensor([ids])).logits[0]
        got.append(vc.losses_from_prompt_logprobs(ids, vllm_prompt_logprobs(logits, ids, top_k=3)))
    for a, b, ids in zip(got, expected, sequences):
        assert a.dtype == np.float32 and a.shape == (len(ids) - 1,)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(span_losses(got[0], spans.q_len, got[1]),
                               span_losses(expected[0], spans.q_len, expected[1]), rtol=1e-4)


def test_prompt_logprobs_must_hold_the_actual_token():
    with pytest.raises(ValueError, match=r"prompt_logprobs\[2\] lacks the actual prompt token 9"):
        vc.losses_from_prompt_logprobs([1, 5, 9], [None, {5: Logprob(-0.1)}, {4: Logprob(-0.2)}])
    with pytest.raises(ValueError, match="3 prompt tokens"):
        vc.losses_from_prompt_logprobs([1, 5, 9], [None, {5: Logprob(-0.1)}])
    assert vc.losses_from_prompt_logprobs([1], [None]).shape == (0,)


def test_logit_memory_estimate_is_tokens_times_vocab_twice_in_fp32():
    assert vc.prompt_logprob_peak_bytes(4096, 128256) == 2 * 4 * 4096 * 128256


# --- start-up errors ---------------------------------------------------------------------------------------------

def run_cfg(**sections) -> Config:
    cfg = Config(**sections)
    cfg.run.output_dir = "out"
    return cfg


@pytest.fixture(autouse=True)
def gpu_build(monkeypatch):
    """These start-up checks describe a GPU install, whichever vLLM build (if any) this venv holds."""
    monkeypatch.setattr(vc, "installed_platform", lambda: "cuda")


def test_missing_vllm_is_one_sentence_at_start_up(monkeypatch):
    monkeypatch.setattr(vc, "vllm_installed", lambda: False)
    cfg = run_cfg(model=vllm_model())
    with pytest.raises(BackendUnavailable) as err:
        vc.check_backend_available(cfg)
    assert "pip install -e '.[gpu]'" in str(err.value) and str(err.value).count(". ") == 0
    with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[gpu\]'"):
        load_backend(vllm_model())  # an actor on a node without vLLM says the same, not ImportError


def test_a_vllm_model_without_path_names_the_key(monkeypatch):
    monkeypatch.setattr(vc, "vllm_installed", lambda: True)
    with pytest.raises(ConfigError, match=r"pass scorer.path=/models/llama-3-8b"):
        vc.check_backend_available(run_cfg(scorer=vllm_model(name="llama-3-8b", path=None)))
    # An embedded model needs no path: the driver builds it once, as for the HF backend.
    vc.check_backend_available(run_cfg(model=ModelConfig(backend="vllm"), cluster=ClusterConfig(actor_num_gpus=1)))
    with pytest.raises(ConfigError, match="cluster.actor_num_gpus=4"):
        vc.check_backend_available(run_cfg(model=vllm_model(tensor_parallel=4), cluster=ClusterConfig(actor_num_gpus=1)))
    vc.check_backend_available(run_cfg(model=vllm_model(tensor_parallel=4), cluster=ClusterConfig(actor_num_gpus=4)))


def test_cpu_builds_never_ask_for_ray_workers_and_check_the_kv_cache(monkeypatch):
    monkeypatch.setattr(vc, "vllm_installed", lambda: True)
    monkeypatch.setattr(vc, "installed_platform", lambda: "cpu")
    vc.check_backend_available(run_cfg(model=vllm_model(), cluster=ClusterConfig(actor_num_gpus=0)))
    with pytest.raises(ConfigError, match="model.cpu_kvcache_gib"):
        vc.check_backend_available(run_cfg(model=vllm_model(cpu_kvcache_gib=-1)))


def test_hf_models_pass_and_refuse_vllm_only_settings():
    vc.check_backend_available(run_cfg())  # the embedded default: nothing to install
    with pytest.raises(ConfigError, match="model.stop is applied by the vLLM backend only"):
        vc.check_backend_available(run_cfg(model=ModelConfig(stop=["###"])))


NEW_MODELS = ["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-7b-instruct",
              "qwen2.5-14b-instruct", "qwen2.5-32b-instruct", "qwen2.5-72b-instruct", "llama-3.2-3b-instruct",
              "llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "qwen2-7b-instruct", "qwen2-72b-instruct"]
NEW_SCORERS = ["llama-3-8b", "llama-3.2-3b", "qwen2.5-7b"]


@pytest.mark.parametrize("group, name", [("model", n) for n in NEW_MODELS] + [("scorer", n) for n in NEW_SCORERS])
def test_model_configs_compose_and_need_a_path(group, name, monkeypatch):
    monkeypatch.setattr(vc, "vllm_installed", lambda: True)
    cfg = to_config({"run": {"output_dir": "out"}, group: OmegaConf.load(CONF / group / f"{name}.yaml")})
    model = getattr(cfg, group)
    assert model.backend == "vllm" and model.name == name and model.path is None
    billions = float(name.split("-")[-2 if group == "model" else -1].rstrip("b"))
    assert 2 * billions / model.tensor_parallel <= 40  # bf16 weights per 80 GB GPU leave room for the KV cache
    with pytest.raises(ConfigError, match=rf"{group}.path="):
        vc.check_backend_available(cfg)
    cfg.cluster.actor_num_gpus = model.tensor_parallel
    model.path = "/models/x"
    vc.check_backend_available(cfg)
