"""The typed configuration of a run: one dataclass per section, checked by Hydra against every YAML and override."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from omegaconf import MISSING

from engine.config.analysis import AnalysisConfig


@dataclass
class ModelConfig:
    """Which model a stage loads and how; `path` wins over `embedded`."""

    name: str = "smollm2-135m"
    path: Optional[str] = None  # a local HF model directory (e.g. /models/Qwen2.5-7B-Instruct)
    embedded: Optional[str] = "smollm2-135m"  # used when path is None: smollm2-135m | tiny
    backend: str = "hf"  # hf | vllm | echo (a plumbing aid for benchmarks and fault tests, never a model)
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto (bf16 on CUDA, the measured faster on CPU)
    device: str = "auto"  # auto | cpu | cuda
    max_model_len: int = 8192  # prompt + new tokens; the embedded models (smollm2-135m, tiny) have 8192 positions
    max_batch_size: int = 32  # rows per generate() call inside a stage batch
    tensor_parallel: int = 1
    seed: int = 0  # the tiny model's weight seed
    fail_on: Optional[str] = None  # echo backend only: raise on prompts containing this text (fault tests)
    # vLLM engine settings (backend=vllm; engine/backends/vllm_config.py maps them). One engine per stage actor:
    # its GPUs are tensor_parallel * pipeline_parallel, and cluster.pool_size is the number of engine replicas.
    pipeline_parallel: int = 1
    gpu_memory_utilization: float = 0.90  # vLLM's share of each GPU (weights + KV cache)
    max_num_batched_tokens: Optional[int] = None  # tokens per engine step; None: vLLM's default (scoring: 4096)
    max_num_seqs: Optional[int] = None  # sequences in flight per engine; None: vLLM's default
    # vLLM: requests each engine keeps in flight across stage batches (its stage actor takes enough batches at once
    # to hold them); None: max_num_seqs (or 256) on GPUs, 64 on CPUs (backends/vllm_config.default_max_in_flight)
    max_in_flight: Optional[int] = None
    enforce_eager: bool = False  # skip CUDA graphs (faster start, slower decode); always eager on CPU
    cpu_kvcache_gib: float = 2.0  # vLLM on CPU: KV cache per engine, GiB of host memory (3 engines fit 24 GiB)
    # vLLM on CPU: cores kept off the engine's pinned compute threads for its scheduler process (vLLM's default, 1).
    # 0 computes on every core: faster alone on a quiet machine, far slower beside other work (README: vLLM).
    cpu_reserved_cores: int = 1
    stop: list[str] = field(default_factory=list)  # extra stop strings (vLLM backend only)
    double_bos: bool = False  # copied from recipe.fidelity.double_bos by Config: set that, not this


@dataclass
class SamplingConfig:
    """Decoding settings of one generation step; temperature 0 means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256


@dataclass
class FidelityConfig:
    """Switches that reproduce quirks of the research code; defaults follow the paper."""

    breadth_stray_quote: bool = False  # the research code's stray "'" before "You MUST" in the breadth prompt
    auto_evol_parse: str = "robust"  # seed: split on "#Finally Rewritten Instruction#:\n" | robust: format drift
    # The seed's vLLM 0.6.3 tokenized chat-templated *text* with special tokens, so Llama-3 prompts got a second
    # <|begin_of_text|> (vllm issue #9519). false: the template is applied once, to ids (one BOS).
    double_bos: bool = False


@dataclass
class RecipeConfig:
    """An Evol-Instruct recipe: evolve -> eliminate -> respond, chained for `rounds`."""

    name: str = "evol_instruct"
    breadth: bool = True  # paper A.1: Alpaca uses 4 depth + breadth (K=5); GSM8K/Code Alpaca depth only (K=4)
    evolve: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.7, 0.95, 256))
    respond: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.0, 1.0, 512))
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    # Output-space analysis (paper Fig. 5): histograms of the top-1 probability and the entropy of the evolver's
    # raw next-token distribution at every generated position, per evolver, in summary.json["output_space"].
    output_space: bool = False


@dataclass
class FieldsConfig:
    """Which source column (a dotted path into nested rows: `instances.0.input`) fills each record field; None
    keeps the format's own. `conversation` is the list of turns of the sharegpt / messages formats."""

    instruction: Optional[str] = None
    input: Optional[str] = None
    output: Optional[str] = None
    system: Optional[str] = None
    id: Optional[str] = None
    conversation: Optional[str] = None


@dataclass
class DataConfig:
    """Seed data: a file or directory (`path`; None means the packaged demo seeds), or with `source=hf` the HF
    dataset `name` read from the local cache, never downloaded; `format` and `fields` say where each field is."""

    name: str = "demo"
    path: Optional[str] = None
    source: str = "file"  # file (path, or the demo seeds) | hf (name / config / split from the local HF cache)
    config: Optional[str] = None  # source=hf: the dataset's configuration (subset)
    split: str = "train"  # source=hf
    cache_dir: Optional[str] = None  # source=hf: None is HF's own (HF_DATASETS_CACHE, HF_HOME)
    format: str = "alpaca"  # auto | alpaca | dolly | sharegpt | messages
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    schema_check_rows: int = 100  # the first N rows all rejected for one schema reason: stop before any model loads
    limit: Optional[int] = None  # keep only the first N seed rows (by position)
    max_chars: int = 20000  # longer instruction + input: handled by `long_rows`
    long_rows: str = "reject"  # reject (reason too_long) | truncate (cut to max_chars, flagged in `detail`)


@dataclass
class ClusterConfig:
    """Where and with what resources the stages run."""

    name: str = "local"
    address: Optional[str] = None  # None: join RAY_ADDRESS if set, else start a local Ray
    num_cpus: Optional[int] = None  # CPUs of a local Ray (None: all)
    pool_size: int = 1  # actors per model stage
    actor_num_cpus: float = 0.25  # fractions: on 2 CPUs, three pools x 1 CPU deadlock Ray Data
    actor_num_gpus: float = 0.0
    actor_memory_gb: Optional[float] = None  # heap memory each stage actor reserves (None: no reservation)
    actor_resources: Dict[str, float] = field(default_factory=dict)  # custom Ray resources every stage actor needs
    torch_threads: Optional[int] = None  # torch threads per actor (None: all cores of the node)
    batch_size: int = 16  # rows per map_batches call of a model stage
    # true: one actor pool runs every stage of a round (each model loaded once per actor, not once per pool);
    # false: a pool per model stage, so the stages pipeline across pools; auto: fused on CPUs when every model
    # stage asks for the same resources (recipes/resources.py fuses). benchmarks/pipeline_overhead.py measures both.
    fuse_stages: str = "auto"
    read_batch_rows: int = 1000
    # Failure policy: a killed actor is restarted and its in-flight batches retried (costing time, not rows); a
    # block whose retries are exhausted fails the run unless max_errored_blocks allows it (those rows would then
    # be missing, which the row-count check reports).
    max_errored_blocks: int = 0
    # None: Ray Data's own policy (a dead actor restarts and its batches and dead tasks are retried, on system
    # failures only, without limit). A number bounds it, but Ray 2.60 takes that only through map_batches'
    # deprecated **ray_remote_args (a RayDeprecationWarning; removed in Ray 2.64), so it is passed only when set.
    actor_max_restarts: Optional[int] = None  # restarts of one stage actor
    actor_max_task_retries: Optional[int] = None  # retries of a batch whose actor died
    task_max_retries: Optional[int] = None  # retries of a cheap-stage / read / commit task whose worker died


@dataclass
class StageResourcesConfig:
    """One stage's own resources; each None falls back to the cluster.* default of the same meaning."""

    pool_size: Optional[int] = None  # cluster.pool_size
    batch_size: Optional[int] = None  # cluster.batch_size
    num_cpus: Optional[float] = None  # cluster.actor_num_cpus
    num_gpus: Optional[float] = None  # cluster.actor_num_gpus
    memory_gb: Optional[float] = None  # cluster.actor_memory_gb
    resources: Dict[str, float] = field(default_factory=dict)  # empty: cluster.actor_resources
    torch_threads: Optional[int] = None  # cluster.torch_threads


@dataclass
class StagesConfig:
    """Per-stage resources (`stages.score.pool_size=2`, `stages.evolve.num_gpus=4`): a big evolver and a small
    scorer sized apart. Keys name stage roles; a recipe's stage takes the key of its role."""

    evolve: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # Evolve, AutoEvolve
    keywords: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # TrajectoryKeywords
    respond: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # Respond
    score: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # Score (IFD / IC-IFD)
    augment: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # AutoIF AugmentGen
    verify: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # AutoIF VerifyGen + CrossValidate
    optimize: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # Auto Evol-Instruct optimizer
    judge: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # analysis: Judge, PairwiseJudge
    embed: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # Embed: analysis, select.min_distance
    reward: StageResourcesConfig = field(default_factory=StageResourcesConfig)  # analysis: Reward


@dataclass
class CostConfig:
    """Prices for the cost line of summary.json["throughput"]; None leaves the cost out."""

    gpu_hour_usd: Optional[float] = None  # one accelerator for an hour
    cpu_hour_usd: Optional[float] = None  # one node (machine) for an hour


@dataclass
class RunConfig:
    """Where the outputs go and the run's seed."""

    output_dir: str = MISSING
    seed: int = 0
    # line: one log line per stage (rows done, rows/s, ETA) every progress_interval_s, Ray Data's bars off |
    # verbose: those lines and Ray Data's progress bars | off (true/false also work: line/off)
    progress: str = "line"
    progress_interval_s: float = 30.0
    cost: CostConfig = field(default_factory=CostConfig)
    resume: bool = True  # rerun into the same output_dir: finish what is missing; false: start over
    shard_rows: int = 10000  # rows per committed output shard (the unit a resumed run skips)
    # A round over more input rows runs as several Ray Data executions of about this many rows each (by seed
    # position), which bounds the driver's memory; each starts its stage actors anew. None: one per round.
    segment_rows: Optional[int] = 250000


@dataclass
class ScoringConfig:
    """IFD / IC-IFD scoring after respond, by the `scorer` model (a base LM in the paper)."""

    enabled: bool = True
    format: str = "raw"  # raw: the seed's Q + "\n" + A | chat: the scorer's chat template around Q
    max_length: int = 2048  # tokens of [BOS] Q sep A; longer rows are truncated and flagged


@dataclass
class SelectConfig:
    """Keep the top of the final round by a score, with a cut computed over all shards at once."""

    by: str = "ic_ifd"  # ic_ifd | ifd (highest kept) | instruction_length | instruction_loss (lowest kept)
    fraction: Optional[float] = None  # keep this top fraction (e.g. 0.25); None: no fraction cut
    top_k: Optional[int] = None  # or keep this many
    threshold: Optional[float] = None  # or keep rows scoring at least this (at most, for the lowest-kept kinds)
    ifd_below_one: bool = False  # Superfiltering: drop rows with IFD >= 1 before the cut
    # DEITA's score-first diversity: walking down the ranking, keep a row only at cosine distance > this from every
    # row kept before it (embedded by analysis.embedder with stages.embed's resources); the skipped rows are
    # rejected `too_similar`. None: off. In [0, 2); the count asked by fraction / top_k is filled by distinct rows.
    min_distance: Optional[float] = None


@dataclass
class DedupConfig:
    """Drop duplicate rows of the final round before the selection cut: exact (the same normalised instruction +
    input) and near (MinHash LSH proposes pairs, their shingle sets' Jaccard decides); the first occurrence (lowest
    seed position, then id) is kept, the others go to rejects as `duplicate` naming it."""

    enabled: Optional[bool] = None  # None: the recipe's default (off for evol_instruct, autoif, auto_evol)
    exact: bool = True  # same text after lower-casing, removing punctuation and collapsing spaces
    near: bool = True  # near duplicates by MinHash LSH
    threshold: float = 0.8  # Jaccard of the shingle sets at or above which two rows are near duplicates
    num_perm: int = 128  # MinHash permutations (the LSH bands x rows come from datasketch for the threshold)
    shingle: str = "word"  # word: runs of words | char: runs of characters (short texts)
    shingle_size: int = 3  # words (or characters) per shingle
    recall_weight: float = 0.98  # datasketch's weight on missed pairs when it picks bands x rows (false: 1 - it)


@dataclass
class SandboxConfig:
    """Limits for running LLM-written verifiers (engine/sandbox/README.md says what they contain)."""

    wall_s: float = 5.0  # per call, as the seed's SIGALRM timeout
    cpu_s: int = 5
    memory_mb: int = 512  # RLIMIT_AS per process; with the tmpfs sizes, the job's cgroup memory limit
    workers: int = 2  # verifier processes at once per actor
    isolation: str = "auto"  # auto (bwrap if installed, else the child's own namespaces) | bwrap | namespaces | none
    require: str = "auto"  # strict: refuse to run without mount isolation | auto: the strongest there is, every job
    tmp_mb: int = 16  # size cap of each job's private /tmp and workdir (tmpfs)
    uid_first: int = 2_000_000_000  # each concurrent job runs as its own uid from [uid_first, uid_first + uid_count)
    uid_count: int = 256  # must cover every concurrent job on a machine (all actors)


@dataclass
class AutoIFConfig:
    """AutoIF (paper Sec. 2.2): augment constraints, write verifiers, cross-validate them by running them."""

    augment_calls: int = 100  # the seed sends the augmentation prompt 100 times
    samples_per_instruction: int = 8  # verification generations per instruction
    generate: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.7, 0.95, 2048))
    json_mode: str = "robust"  # seed: first ```json block only | robust: any fenced block, then bare JSON
    # Constrain each verification answer to a ```json block of {"func", "cases": three {"input", "output": bool}}
    # (prompts/autoif.py VERIFICATION_SCHEMA; xgrammar on HF, structured outputs on vLLM): every answer parses.
    # Off by default: the paper's runs sampled the prompt freely and parsed what came back.
    structured: bool = False
    normalise_expected: bool = True  # "true"/"false" strings as booleans (the seed compares them raw: false)
    min_func_acc: float = 0.8
    min_funcs: Optional[int] = None  # upstream AutoIF skips an instruction with < 3 functions; the paper: off
    min_cases: Optional[int] = None  # upstream: < 10 cases; the paper: off
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    seeds_path: Optional[str] = None  # seed constraints, one per line (None: the 36 shipped with the engine)
    queries_path: Optional[str] = None  # JSONL of {"query": ...} (None: the small file shipped with the engine)
    queries_per_instruction: int = 16
    query_min_chars: int = 20  # queries kept when min < len < max characters, as the seed filters ShareGPT
    query_max_chars: int = 300


@dataclass
class AutoEvolConfig:
    """Auto Evol-Instruct options beyond the paper's run."""

    keywords: bool = False  # trajectory analysis: summarise every Step-1 method line into a keyword phrase
    # Constrain each 4-step answer to its four labelled sections ending in a non-empty final instruction
    # (prompts/auto_evol.py four_step_structured), parsed on its exact labels: no answer is `unparsable`.
    # Off by default: the paper's runs sampled the prompt freely and parsed what came back.
    structured: bool = False
    keyword_tokens: int = 32
    # The optimizer loop the paper left out (Zeng et al. 2024): evolve a mini-batch with the current method, let
    # the model analyse the failed evolutions and propose improved methods, keep the lowest dev failure rate.
    optimize: bool = False
    steps: int = 2
    candidates: int = 3  # improved methods sampled per step
    train_rows: int = 8  # mini-batch evolved and analysed per step (the first seed rows)
    dev_rows: int = 8  # held-out rows each candidate's failure rate is measured on (the next seed rows)
    optimizer: SamplingConfig = field(default_factory=lambda: SamplingConfig(0.7, 0.95, 1024))
    method: Optional[str] = None  # the evolving method text (None: the paper's universal 4-step prompt)
    optimizer_model: Optional[ModelConfig] = None  # the model that analyses and rewrites methods (None: the evolver)


@dataclass
class CurateConfig:
    """recipe=curate: an existing instruction set read, deduplicated, answered where asked, scored and selected,
    with no evolution."""

    # missing: the `model` answers rows without an output | always: every row (the given answer kept in
    # `given_output`, to compare responders) | never: rows are scored as they are; a row without an output is
    # rejected (no_output)
    respond: str = "missing"


@dataclass
class CompareConfig:
    """Evolve the same seeds with several evolvers in one run (paper: SLM vs LLM), each into RUN_DIR/<name>/,
    then join their final rounds by seed id into RUN_DIR/side_by_side/. Empty: an ordinary run of `model`."""

    # name -> evolver, composed from conf/model in an experiment's defaults (`/model@compare.evolvers.slm: tiny`)
    evolvers: Dict[str, ModelConfig] = field(default_factory=dict)


@dataclass
class Config:
    """The whole run: one object, saved resolved beside every output."""

    model: ModelConfig = field(default_factory=ModelConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    run: RunConfig = field(default_factory=RunConfig)
    scorer: ModelConfig = field(default_factory=lambda: ModelConfig(dtype="auto", max_batch_size=16))
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    autoif: AutoIFConfig = field(default_factory=AutoIFConfig)
    auto_evol: AutoEvolConfig = field(default_factory=AutoEvolConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    rounds: int = 1

    def __post_init__(self) -> None:
        # Backends see only their ModelConfig: hand the generators the fidelity switch (the scorer builds its ids).
        for model in (self.model, self.auto_evol.optimizer_model, *self.compare.evolvers.values()):
            if model is not None:
                model.double_bos = self.recipe.fidelity.double_bos


class ConfigError(ValueError):
    """A config that composes but cannot run; the message names the key to change."""
