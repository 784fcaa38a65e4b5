"""Auto Evol-Instruct prompts (paper Figs. 15 and 18), byte-exact, and the parser of the 4-step answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.backends.base import Structured

BASE_INSTRUCTION = (
    "You are an Instruction Rewriter that rewrites the given #Instruction# into a more complex version.\n"
    "Please follow the steps below to rewrite the given #Instruction# into a more complex version.\n\n"
    "Step 1: Please read the #Instruction# carefully and list all the possible methods to make this instruction "
    "more complex (to make it a bit harder for well-known AI assistants such as ChatGPT and GPT4 to handle). "
    "Please do not provide methods to change the language of the instruction!\n\n"
    "Step 2: Please create a comprehensive plan based on the #Methods List# generated in Step 1 to make the "
    "#Instruction# more complex. The plan should include several methods from the #Methods List#.\n\n"
    "Step 3: Please execute the plan step by step and provide the #Rewritten Instruction#. #Rewritten Instruction# "
    "can only add 10 to 20 words into the #Instruction#.\n\n"
    "Step 4: Please carefully review the #Rewritten Instruction# and identify any unreasonable parts. Ensure that "
    "the #Rewritten Instruction# is only a more complex version of the #Instruction#. Just provide the #Final "
    "Rewritten Instruction# without any explanation.\n\n"
    "Please reply strictly in the following format:\n\n"
    "Step 1 #Methods List#:\n"
    "Step 2 #Plan#:\n"
    "Step 3 #Rewritten Instruction#:\n"
    "Step 4 #Finally Rewritten Instruction#:\n\n"
    "#Instruction#:\n"
)

KEYWORD_PROMPT = (
    "You are tasked with generating a concise summary for the given method of instruction evolution. Please follow "
    "the steps below:\n\n"
    "Step 1: Carefully read the given method of instruction evolution and identify the key concept or process it "
    "describes.\n"
    "Step 2: Create a short and simple phrase that accurately summarizes the core idea of the method. The summary "
    "should be succinct and focus on the essence of the evolution process.\n"
    "Ensure that the phrase does not contain any unnecessary symbols, punctuation, or formatting. It should be just "
    "a brief, clear description of the method.\n"
    "Please ignore the numerical labels or special identifiers at the beginning of the methods.\n"
    "Provide only the summary phrase without any further explanation or additional information.\n\n"
    "Method of Instruction Evolution:\n"
)

SEED_SPLIT = "#Finally Rewritten Instruction#:\n"  # the research code's exact split string


def auto_evol_prompt(instruction: str) -> str:
    """The universal 4-step evolving prompt around one instruction (concatenation: instructions hold braces)."""
    return BASE_INSTRUCTION + instruction


def keyword_prompt(method: str) -> str:
    """The prompt that summarises one Step-1 method line into a keyword phrase (trajectory analysis)."""
    return KEYWORD_PROMPT + method


@dataclass(frozen=True)
class Trajectory:
    """The four parts of a 4-step answer; `final` empty means it could not be parsed."""

    methods: str
    plan: str
    rewritten: str
    final: str


# Step headers as models actually write them: optional markdown (#, *, **), optional "Step N", spacing variants,
# the label with or without its # marks, then ":" or a line break.
_HEADER = r"(?:^|\n)[ \t>*#_]*(?:step\s*{n}\s*[:.)-]?\s*)?[*_ ]*#?\s*{label}\s*#?[*_ ]*\s*(?::|\n)"
_LABELS = {1: r"methods?\s*list", 2: r"plan", 3: r"rewritten\s*instruction", 4: r"finally\s*rewritten\s*instruction"}
_HEADERS = {n: re.compile(_HEADER.format(n=n, label=label), re.IGNORECASE) for n, label in _LABELS.items()}


def parse_trajectory(text: str, mode: str = "robust") -> Trajectory:
    """Split a 4-step answer. mode "seed": the research code's `text.split("#Finally Rewritten Instruction#:\\n",
    1)[1]` for the final instruction (Step 1 via its split on "Step 2 #Plan#"); "robust": tolerant of markdown,
    spacing, case and a missing newline, each part cut at the next step header."""
    if mode == "structured":
        return parse_structured(text)
    if mode == "seed":
        final = text.split(SEED_SPLIT, 1)[1].strip() if SEED_SPLIT in text else ""
        methods = text.split("Step 2 #Plan#", 1)[0]
        return Trajectory(methods.strip(), "", "", final)
    if mode != "robust":
        raise ValueError(f"auto_evol.parse_mode must be seed, robust or structured, not {mode!r}")
    spans = {}
    for n, header in _HEADERS.items():
        matches = list(header.finditer(text))
        if matches:
            match = matches[-1] if n == 4 else matches[0]  # the answer's last Step 4, after any echo of the format
            spans[n] = match
    parts = {}
    for n, match in spans.items():
        later = [m.start() for k, m in spans.items() if k > n and m.start() >= match.end()]
        end = min(later) if later else len(text)
        parts[n] = text[match.end():end].strip().strip("*_").strip()
    return Trajectory(parts.get(1, ""), parts.get(2, ""), parts.get(3, ""), parts.get(4, ""))


# Structured 4-step answers (auto_evol.structured): the format the prompt asks for, as a grammar. The four labels
# exactly as the prompt writes them, each on its own line; no section holds a "#", so each label occurs once and
# the answer splits on them exactly (parse_structured; the seed's split finds the same final instruction). Steps
# 1-3 may span lines; the final instruction is one line that starts with a printable character, so it is never
# empty. Sections are printable ASCII (plus newlines in steps 1-3): every token writes at least one character, and
# the section lengths are cut so the longest answer fits the token budget.
STEP_LABELS = ("Step 1 #Methods List#:\n", "\nStep 2 #Plan#:\n", "\nStep 3 #Rewritten Instruction#:\n",
               "\nStep 4 #Finally Rewritten Instruction#:\n")
STEP_SHARES = (0.3, 0.25, 0.2, 0.25)  # of the characters left after the labels
_SECTION_CHAR = r"[ -\"$-~\n]"  # printable ASCII but "#", or a newline
_FINAL_FIRST, _FINAL_CHAR = r"[!-\"$-~]", r"[ -\"$-~]"  # one line, not starting with a space


def four_step_budget(max_new_tokens: int) -> tuple[int, ...]:
    """The longest section 1-4 (characters) such that the longest answer, with its labels and the closing
    end-of-sequence token, fits `max_new_tokens`."""
    room = max_new_tokens - 1 - sum(len(label) for label in STEP_LABELS)
    sizes = tuple(int(room * share) for share in STEP_SHARES)
    if min(sizes) < 8:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a structured 4-step answer")
    return sizes


def four_step_structured(max_new_tokens: int) -> Structured:
    """The constraint on one 4-step answer for a budget of `max_new_tokens`."""
    sizes = four_step_budget(max_new_tokens)
    parts = [Structured.literal(label) + _SECTION_CHAR + "{1,%d}" % size
             for label, size in zip(STEP_LABELS[:3], sizes[:3])]
    parts.append(Structured.literal(STEP_LABELS[3]) + _FINAL_FIRST + _FINAL_CHAR + "{0,%d}" % (sizes[3] - 1))
    return Structured(regex="".join(parts))


def parse_structured(text: str) -> Trajectory:
    """Split an answer written under four_step_structured on its exact labels; an answer without all four in
    order (an unconstrained one) gives an empty final instruction."""
    match = _STRUCTURED_SPLIT.search(text)
    if match is None:
        return Trajectory("", "", "", "")
    return Trajectory(*(part.strip() for part in match.groups()))


_STRUCTURED_SPLIT = re.compile("(.*?)".join(re.escape(label) for label in STEP_LABELS) + "(.*)", re.DOTALL)


# The optimizer loop's prompts (after Zeng et al. 2024, Automatic Instruction Evolving; wording ours: the paper
# under study ran no optimizer, so there is no research-code text to match).
ANALYSIS_HEAD = (
    "Below are cases where an instruction was rewritten into a more complex version by following an evolving "
    "method. For each case, Stage 0 is the original instruction and Stage 1 is the rewritten one.\n"
    "Identify the cases that failed to evolve (for example: the rewrite answers the instruction instead of "
    "rewriting it, copies it, drops its meaning, adds far more than 10 to 20 words, or leaves the required format) "
    "and, for each, give its case number and the reason in one line.\n\n"
)
OPTIMIZE_HEAD = (
    "You are an Instruction Method Optimizer. Here is the current method for rewriting an instruction into a more "
    "complex version:\n\n### METHOD\n"
)
OPTIMIZE_TAIL = (
    "\n### END\n\nHere is feedback on how this method failed on some instructions:\n"
)
OPTIMIZE_ASK = (
    "\n\nWrite an improved method that avoids these failures. Keep its four steps and keep the reply format "
    "it asks for, including the lines \"Step 4 #Finally Rewritten Instruction#:\" and \"#Instruction#:\" at the "
    "end. Reply with the improved method only, between a line \"### METHOD\" and a line \"### END\"."
)


def analysis_prompt(cases: list[tuple[str, str]]) -> str:
    """Evol-trajectory analysis: (original, rewritten) pairs numbered from 1."""
    body = "".join(f"Case {k}:\nStage 0: {before}\nStage 1: {after}\n\n" for k, (before, after) in enumerate(cases, 1))
    return ANALYSIS_HEAD + body


def optimization_prompt(method: str, feedback: str) -> str:
    """Method optimization: the current evolving method and the analysis of its failures."""
    return OPTIMIZE_HEAD + method + OPTIMIZE_TAIL + feedback + OPTIMIZE_ASK


def extract_method(text: str) -> str:
    """The method between "### METHOD" and "### END" in an optimizer answer, ending with "#Instruction#:\n" so an
    instruction can follow; "" when the answer holds no usable method (it must keep the Step 4 line)."""
    start = text.find("### METHOD")
    if start < 0:
        return ""
    body = text[start + len("### METHOD"):]
    end = body.find("### END")
    body = (body[:end] if end >= 0 else body).strip("\n")
    if "#Finally Rewritten Instruction#" not in body or "#Instruction#:" not in body:
        return ""
    return body[: body.rindex("#Instruction#:")] + "#Instruction#:\n"
