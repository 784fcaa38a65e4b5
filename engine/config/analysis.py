"""Typed configuration of the analysis suite (`python -m engine.analyze`, `python -m engine.pairwise`): the
`analysis` section of engine/config/schema.py's Config, kept apart so that schema.py holds what a run needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class JudgeConfig:
    """An LLM-judge step of the analysis suite (difficulty labels, complexity score)."""

    enabled: bool = True
    prompt: str = "code"  # code: the research code's prompt | paper: the paper's figure (they differ)
    parse: str = "robust"  # seed: the research code's exact match | robust: case, markdown, extra words, numbers
    max_new_tokens: int = 16  # the judge answers a label or a number
    retries: int = 1  # unparsable answers are asked again (sampled, T=0.7) this many times, then counted


@dataclass
class EmbedderConfig:
    """The sentence-embedding model of the diversity measure."""

    path: Optional[str] = None  # a local sentence-transformers dir; None: the bundled all-MiniLM-L6-v2
    batch_size: int = 256
    device: str = "auto"


@dataclass
class DiversityConfig:
    """Minimum neighbour distance (squared L2 of unit embeddings) within each evolver's rows."""

    enabled: bool = True
    threshold: float = 0.05  # near duplicates: other rows closer than this (the seed's value)
    block_rows: int = 4096  # exact search in query x database blocks: memory O(block^2), not O(n^2)


@dataclass
class RewardConfig:
    """Reward of the evolution step by a sequence-classification reward model (local path; off by default)."""

    path: Optional[str] = None  # None: reward scoring is skipped
    length_norm: str = "none"  # none | divide (score / tokens * mean tokens) | multiply (score * tokens / mean)
    max_length: int = 4096
    batch_size: int = 4


@dataclass
class PairwiseConfig:
    """Pairwise judging of two answer sets with position swap."""

    tie_policy: str = "consistent"  # consistent: a win needs both orders to agree | lenient: one win + one tie wins
    parse: str = "robust"  # seed: judge.py's substring test (unparsable = tie) | robust: the last well-formed label
    output_dir: Optional[str] = None  # `python -m engine.pairwise A B`: None writes pairwise/<A>-vs-<B>/
    max_new_tokens: int = 512


@dataclass
class AnalysisConfig:
    """`python -m engine.analyze RUN_DIR`: the paper's measurements of evolved data (judge = `model`)."""

    difficulty: JudgeConfig = field(default_factory=JudgeConfig)
    complexity: JudgeConfig = field(default_factory=JudgeConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    pairwise: PairwiseConfig = field(default_factory=PairwiseConfig)
    report: bool = True  # write the HTML report (also at the end of every run)
