"""LLM-judge prompts of the analysis suite (seed reference §3.3, §3.4, §3.7) and tolerant parsers of their answers.

Every parser has two modes: `seed` reproduces the research code's exact matching (anything else is unparsable),
`robust` accepts what judges actually write (case, punctuation, markdown, extra words, numbers inside text).
Unparsable answers are returned as such (None / ""), for the caller to count, never dropped."""

from __future__ import annotations

import re

DIFFICULTY_LABELS = ("very easy", "easy", "medium", "hard", "very hard")

# The research code's difficulty prompt (eval_complex_rate.py), byte-exact: Magpie's template with the newline
# before "## Output" missing.
_DIFFICULTY_HEAD = (
    "# Instruction\nYou first need to identify the given user intent and then label the difficulty level of the "
    "user query based on the content of the user query.\n\n## User Query\n"
)
_DIFFICULTY_TAIL = (
    "\n\n## Output Format\nGiven the user query, in your output, you first need to identify the user intent and "
    "the knowledge needed to solve the task in the user query. Then, rate the difficulty level of the user query "
    "as 'very easy', 'easy', 'medium', 'hard', or 'very hard'.\nRemember, only generate the difficulty level "
    "without any other words or symbols."
)
DIFFICULTY_CODE = _DIFFICULTY_HEAD + "{}" + _DIFFICULTY_TAIL + "## Output\n"
# The paper's figure shows Magpie's layout, with "## Output" on its own line.
DIFFICULTY_PAPER = _DIFFICULTY_HEAD + "{}" + _DIFFICULTY_TAIL + "\n## Output\n"

# The research code's 0-100 complexity prompt (eval_complex_score.py), byte-exact (no space after "complexity.").
COMPLEXITY_CODE = (
    "We would like you to evaluate and rate the difficulty and complexity of the following question.\nYou should "
    "give an overall score on a scale of 0 to 100, where a higher score indicates higher difficulty and complexity."
    "You must just give a score without any other words or special symbols.\n## Question:\n{}\n## Score:\n"
)
# The paper's Fig. 19 prompt is Magpie-style. The seed reference quotes its start and end; the elided middle is
# rebuilt from the difficulty prompt it mirrors (our reconstruction, not a quotation).
COMPLEXITY_PAPER = (
    "# Instruction\nYou first need to identify the given user intent and then label the difficulty score of the "
    "user query based on the content of the user query.\n\n## User Query\n{}\n\n## Output Format\nGiven the user "
    "query, in your output, you first need to identify the user intent and the knowledge needed to solve the task "
    "in the user query. Then, rate the difficulty score of the user query from 0 to 100.\nRemember, only generate "
    "the difficulty score without any other words or symbols.\n## Output\n"
)

# judge.py's PROMPT_eval_single (paper Fig. 20 words it slightly differently); it starts with a newline.
PAIRWISE = (
    "\n[User]\n{user_query}\n[End of User]\n[Assistant 1]\n{assistant1}\n[End of Assistant 1]\n[Assistant 2]\n"
    "{assistant2}\n[End of Assistant 2]\n[System]\n"
    "We would like to request your feedback on the two dialogues shown above between an AI assistant and a user.\n"
    "Focus on the AI's responses. The AI's responses should perfectly align with the user's needs. Additionally, "
    "the responses should be concise and to the point, avoiding unnecessary details or excessive information, "
    "while still being as comprehensive as possible in addressing the user's query. The answers must maintain "
    "good logical flow, use precise technical terms, and be factually accurate and objective.\n"
    "Based on the above criteria, compare the performance of Assistant 1 and Assistant 2. Determine which one is "
    "\"better than,\" \"worse than,\" or \"equal to\" the other. First, compare their responses and analyze which "
    "aligns better with the stated requirements.\n\n"
    "On the last line, output a single label only, selecting from one of the following:\n"
    "'Assistant 1 is better than Assistant 2'\n'Assistant 1 is worse than Assistant 2'\n"
    "'Assistant 1 is equal to Assistant 2'"
)

PROMPTS = {"difficulty": {"code": DIFFICULTY_CODE, "paper": DIFFICULTY_PAPER},
           "complexity": {"code": COMPLEXITY_CODE, "paper": COMPLEXITY_PAPER}}
PARSE_MODES = ("seed", "robust")


def judge_prompt(kind: str, variant: str, instruction: str) -> str:
    """The difficulty or complexity prompt (`variant` code | paper) around one instruction."""
    try:
        template = PROMPTS[kind][variant]
    except KeyError:
        raise ValueError(f"analysis.{kind}.prompt={variant!r}: choose code or paper") from None
    return template.replace("{}", instruction, 1)


def pairwise_prompt(question: str, first: str, second: str) -> str:
    """The pairwise prompt with `first` as Assistant 1 and `second` as Assistant 2."""
    values = {"user_query": question, "assistant1": first, "assistant2": second}
    # One pass: a placeholder written inside an answer is never substituted again.
    return re.sub(r"\{(user_query|assistant1|assistant2)\}", lambda m: values[m.group(1)], PAIRWISE)


def _words(text: str) -> str:
    """Lowercase words separated by single spaces: markdown, quotes, hyphens and punctuation gone."""
    return " ".join(re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower().replace("-", " ")))


_LABEL = re.compile(r"\b(very easy|very hard|easy|medium|hard)\b")


def parse_difficulty(text: str, mode: str = "robust") -> str | None:
    """One of DIFFICULTY_LABELS, or None when the answer names none.

    seed: the whole answer must equal a label exactly (case-sensitive). robust: the LAST label mentioned wins
    (judges often restate the scale before answering), "very hard" is not read as "hard"; a negated label
    ("not easy") is skipped."""
    if mode == "seed":
        return text if text in DIFFICULTY_LABELS else None
    words = _words(text)
    found = [m for m in _LABEL.finditer(words) if not words[:m.start()].endswith("not ")]
    return found[-1].group(1) if found else None


_NUMBER = re.compile(r"(?<![\w.#])(\d+(?:\.\d+)?)\s*(?:(/|out of)\s*(100|10)\b)?(\s*%)?")


def parse_score(text: str, mode: str = "robust") -> float | None:
    """A 0-100 score, or None when the answer holds none in range.

    seed: `float(answer)` (the research code). robust: the first number in the text ("Score: 85", "**70**",
    "85/100", "I'd say 60 out of 100"); "7/10" and "7 out of 10" are scaled to 70; out-of-range numbers are
    unparsable rather than clipped. Numbers that are not scores are skipped: "#2" (a heading or item number) and
    "100%" (a percentage)."""
    if mode == "seed":
        try:
            return float(text)
        except ValueError:
            return None
    for match in _NUMBER.finditer(text.replace(",", "")):
        if match.group(4):
            continue
        value = float(match.group(1))
        if match.group(3) == "10":
            value *= 10
        if 0 <= value <= 100:
            return value
    return None


# A verdict about the order shown: "1" (Assistant 1 better), "2" (Assistant 2 better), "tie", "" (unparsable).
_VERDICT = re.compile(r"assistant ([12]) is (better than|worse than|equal to) assistant ([12])")


def parse_verdict(text: str, mode: str = "robust") -> str:
    """The verdict of one pairwise answer about the order it saw.

    seed: judge.py's substring test ("better than" -> 1, "worse than" -> 2, anything else -> tie, so an
    unparsable answer counts as a tie). robust: the last well-formed label, read either way round ("Assistant 2
    is better than Assistant 1" -> 2), on the last line first; "" when there is none."""
    if mode == "seed":
        return "1" if "better than" in text else "2" if "worse than" in text else "tie"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for chunk in ([lines[-1]] if lines else []) + [text]:
        found = [m for m in _VERDICT.finditer(_words(chunk)) if m.group(1) != m.group(3)]
        if found:
            subject, relation, _ = found[-1].groups()
            if relation == "equal to":
                return "tie"
            better_first = (relation == "better than") == (subject == "1")
            return "1" if better_first else "2"
    return ""


TIE_POLICIES = ("consistent", "lenient")


def combine_orders(first: str, swapped: str, policy: str = "consistent") -> str:
    """Outcome for dataset A from two verdicts: `first` with A as Assistant 1, `swapped` with B as Assistant 1.

    consistent (the deleted run_judge.py): A wins only if preferred in both orders, loses only if B is preferred
    in both; anything else (disagreement, ties, unparsable) is a tie. lenient: a preference in one order and a
    tie in the other also counts; contradictory orders are a tie. Returns win | tie | lose."""
    if policy not in TIE_POLICIES:
        raise ValueError(f"analysis.pairwise.tie_policy={policy!r}: choose one of {', '.join(TIE_POLICIES)}")
    a_votes = {"1": "a", "2": "b", "tie": "tie", "": "none"}
    votes = (a_votes[first], {"1": "b", "2": "a", "tie": "tie", "": "none"}[swapped])
    if votes == ("a", "a"):
        return "win"
    if votes == ("b", "b"):
        return "lose"
    if policy == "lenient" and "a" in votes and "b" not in votes and "none" not in votes:
        return "win"
    if policy == "lenient" and "b" in votes and "a" not in votes and "none" not in votes:
        return "lose"
    return "tie"
