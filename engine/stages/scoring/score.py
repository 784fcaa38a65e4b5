"""Score: IFD and IC-IFD from per-token losses of a scorer model, two forward passes per row.

With L the mean token cross-entropy: IFD = L(A|Q) / L(A) and IC-IFD = L(A|Q) / (L(Q) * L(A)) (paper Eqs. 1-2,
losses, not perplexities). One pass over [BOS] Q sep A gives L(Q) (Q's tokens) and L(A|Q) (sep and A's
tokens, as the seed's `labels[:n_Q] = -100` counts the separator in A); one pass over [BOS] A gives L(A)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.backends import load_backend
from engine.config import ModelConfig, ScoringConfig
from engine.rows.records import default_columns, ok_mask, reject_with_reasons


@dataclass(frozen=True)
class Spans:
    """Token ids of one row's two scoring passes and where Q ends in the first."""

    qa_ids: list[int]  # [BOS] Q sep A (raw) or chat(Q) A <eos> (chat)
    q_len: int  # tokens of [BOS] Q: targets 1..q_len-1 are Q, the rest are A|Q
    a_ids: list[int]  # [BOS] A
    truncated: bool


def question_text(instruction: str, input_text: str) -> str:
    """Q as the seed builds it: the instruction, plus "\\n" and the input when there is one."""
    return instruction + ("\n" + input_text if input_text else "")


def build_spans(tokenizer, bos_id: int, instruction: str, input_text: str, answer: str,
                fmt: str = "raw", max_length: int = 2048) -> Spans:
    """Tokenize Q, the separator and A separately and concatenate ids, so the Q/A boundary is exact."""
    question = question_text(instruction, input_text)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if fmt == "raw":  # the seed: Q + "\n" + A, no template
        q_ids = [bos_id] + tokenizer(question, add_special_tokens=False)["input_ids"]
        sep = tokenizer("\n", add_special_tokens=False)["input_ids"]
    elif fmt == "chat":  # the scorer's chat template around Q; A closed by EOS
        templated = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
        )
        q_ids = [int(i) for i in (templated["input_ids"] if hasattr(templated, "keys") else templated)]
        if q_ids[0] != bos_id:
            q_ids = [bos_id] + q_ids
        sep = []
        if tokenizer.eos_token_id is not None:
            answer_ids = answer_ids + [tokenizer.eos_token_id]
    else:
        raise ValueError(f"scoring.format must be raw or chat, not {fmt!r}")
    truncated = len(q_ids) + len(sep) + len(answer_ids) > max_length
    if truncated:
        # Keep the question whole when it fits, leaving room for at least one answer token; cut the answer.
        q_ids = q_ids[: max(1, max_length - len(sep) - 1)]
        answer_ids = answer_ids[: max(0, max_length - len(q_ids) - len(sep))]
    return Spans(q_ids + sep + answer_ids, len(q_ids), [bos_id] + answer_ids, truncated)


def span_losses(qa_losses: np.ndarray, q_len: int, a_losses: np.ndarray) -> tuple[float, float, float]:
    """(L(Q), L(A|Q), L(A)) from the per-token losses of the two passes; NaN where a span is empty.

    qa_losses[j] is the loss of token j+1 of [BOS] Q sep A, so Q's targets are j < q_len - 1."""
    def mean(values: np.ndarray) -> float:
        return float(values.astype(np.float64).mean()) if len(values) else math.nan

    return mean(qa_losses[: q_len - 1]), mean(qa_losses[q_len - 1:]), mean(a_losses)


def ifd_scores(l_q: float, l_a_given_q: float, l_a: float) -> tuple[float, float, str]:
    """(IFD, IC-IFD, problem): the paper's ratios of mean losses, or NaNs and a reason code."""
    if not all(map(math.isfinite, (l_q, l_a_given_q, l_a))):
        return math.nan, math.nan, "score_not_finite"
    if l_a <= 0.0:
        return math.nan, math.nan, "score_zero_answer_loss"
    if l_q <= 0.0:
        return l_a_given_q / l_a, math.nan, "score_zero_question_loss"
    return l_a_given_q / l_a, l_a_given_q / (l_q * l_a), ""


SCORE_COLUMNS = {
    "l_q": math.nan, "l_a_given_q": math.nan, "l_a": math.nan, "ifd": math.nan, "ic_ifd": math.nan,
    "q_tokens": 0, "a_tokens": 0, "score_truncated": False,
}


@dataclass(frozen=True)
class ScoreArgs:
    """What Score uses: the scorer model, the round and the scoring settings (format, max_length)."""

    model: ModelConfig
    round_num: int
    scoring: ScoringConfig


class Score:
    """Adds l_q, l_a_given_q, l_a, ifd, ic_ifd and token counts to ok rows; unscorable rows are rejected."""

    uses_model = True

    def __init__(self, args: ScoreArgs, torch_threads: int | None = None):
        self.round_num = args.round_num
        self.settings = args.scoring
        self.model = load_backend(args.model, torch_threads=torch_threads)
        self.bos_id = self.model.bos_id if self.model.bos_id is not None else self.model.eos_id

    def spans(self, instruction: str, input_text: str, answer: str) -> Spans:
        return build_spans(self.model.tokenizer, self.bos_id, instruction, input_text, answer,
                           self.settings.format, self.settings.max_length)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        columns = default_columns(n, SCORE_COLUMNS)
        reasons, details = [""] * n, [""] * n
        rows = []
        for i in np.flatnonzero(ok_mask(batch)):
            if not str(batch["output"][i]).strip():
                reasons[i], details[i] = "score_empty_answer", "the answer is empty: IFD is undefined"
            else:
                rows.append(i)
        spans = [self.spans(str(batch["instruction"][i]), str(batch["input"][i]), str(batch["output"][i]))
                 for i in rows]
        losses = self.model.token_losses([s.qa_ids for s in spans] + [s.a_ids for s in spans]) if rows else []
        for k, (i, span) in enumerate(zip(rows, spans)):
            l_q, l_aq, l_a = span_losses(losses[k], span.q_len, losses[len(rows) + k])
            ifd, ic_ifd, problem = ifd_scores(l_q, l_aq, l_a)
            for name, value in (("l_q", l_q), ("l_a_given_q", l_aq), ("l_a", l_a), ("ifd", ifd), ("ic_ifd", ic_ifd),
                                ("q_tokens", span.q_len), ("a_tokens", len(span.a_ids) - 1),
                                ("score_truncated", span.truncated)):
                columns[name][i] = value
            if problem:
                reasons[i], details[i] = problem, f"L(Q)={l_q:.4g} L(A|Q)={l_aq:.4g} L(A)={l_a:.4g}"
        batch.update(columns)
        reject_with_reasons(batch, reasons, details, stage="score")
        return batch
