"""Evol-Instruct meta-prompts (paper Figs. 10-12), byte-exact, and the fixed method rotation."""

from __future__ import annotations

DEPTH_METHODS = {
    "constraints": "Please add one more constraint/requirement into #The Given Prompt#",
    "deepen": (
        "If #The Given Prompt# contains inquiries about certain issues, "
        "the depth and breadth of the inquiry can be increased."
    ),
    "concretizing": "Please replace general concepts with more specific concepts.",
    "reasoning": (
        "If #The Given Prompt# can be solved with just a few simple thinking processes, "
        "you can rewrite it to explicitly request multiple-step reasoning."
    ),
}
BREADTH = "breadth"
DEPTH_ORDER = ("constraints", "deepen", "concretizing", "reasoning")

_DEPTH_HEAD = (
    "I want you to act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., ChatGPT and GPT-4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded to by humans.\n"
    "You SHOULD complicate the given prompt using the following method:\n"
)
_DEPTH_TAIL = (
    "You should try your best not to make the #Rewritten Prompt# become verbose, "
    "#Rewritten Prompt# can only add 10 to 20 words into #The Given Prompt#.\n"
    "You MUST only generate the new prompt without #The Given Prompt# and #Rewritten Prompt#.\n"
)

_BREADTH_HEAD = (
    "I want you to act as a Prompt Creator.\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded to by humans or modern AI "
    "chatbots.\n"
)
_BREADTH_MUST = "You MUST only generate the new prompt without any other words or special symbols.\n"


def depth_prompt(method: str, instruction: str) -> str:
    """The depth rewriting meta-prompt for one of the four depth methods."""
    # Note the spaces before "\n" after "#The Given Prompt#:" and after the instruction: they are in the spec.
    return (
        _DEPTH_HEAD
        + DEPTH_METHODS[method]
        + "\n"
        + _DEPTH_TAIL
        + "#The Given Prompt#: \n"
        + instruction
        + " \n#Rewritten Prompt#:\n"
    )


def breadth_prompt(instruction: str, stray_quote: bool = False) -> str:
    """The breadth meta-prompt; `stray_quote` reproduces the research code's stray `'` (the paper has none)."""
    return (
        _BREADTH_HEAD
        + ("'" if stray_quote else "")
        + _BREADTH_MUST
        + "#Given Prompt#: \n"
        + instruction
        + "\n#Created Prompt#:\n"
    )


def method_order(breadth: bool) -> tuple[str, ...]:
    """The fixed method sequence: the four depth methods, then breadth when enabled (K = 4 or 5)."""
    return DEPTH_ORDER + ((BREADTH,) if breadth else ())


def pick_method(methods: tuple[str, ...] | list[str], seed_index: int, round_num: int) -> str:
    """Method for seed row i in round r: methods[(i + r) % K] (paper A.1: fixed sequence, not random)."""
    return methods[(seed_index + round_num) % len(methods)]


def evolution_prompt(method: str, instruction: str, stray_quote: bool = False) -> str:
    """The meta-prompt that evolves `instruction` with `method`."""
    if method == BREADTH:
        return breadth_prompt(instruction, stray_quote=stray_quote)
    return depth_prompt(method, instruction)


# Markers that only appear in an evolved instruction when the model leaked the meta-prompt's scaffolding.
TEMPLATE_MARKERS = (
    "#Rewritten Prompt#",
    "#The Given Prompt#",
    "#Given Prompt#",
    "#Created Prompt#",
    "Rewritten Prompt:",
    "Created Prompt:",
    "The Given Prompt:",
)
