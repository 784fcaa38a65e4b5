"""AutoIF prompts (paper Figs. 13-14 and the concat step), byte-exact to the research code.

Templates are filled by concatenation, not str.format: instructions and queries may contain braces."""

from __future__ import annotations

# The research code's string starts with a newline (a triple-quoted literal opened on its own line).
_AUGMENT_HEAD = (
    "\nYou are an expert for writing instructions. Please provide 50 different instructions that meet the "
    "following requirements:\n"
    "- Instructions are about the format but not style of a response\n"
    "- Whether instructions are followed can be easily evaluated by a Python function\n"
    "Here are some examples of seed instructions we need:\n"
)
_AUGMENT_TAIL = (
    "\nDo not generate instructions about writing style, using metaphor, or translation. Here are some examples "
    "of instructions we do not need:\n"
    "- Incorporate a famous historical quote seamlessly into your answer\n"
    "- Translate your answer into Pig Latin\n"
    "- Use only words that are also a type of food\n"
    "- Respond with a metaphor in every sentence\n"
    "- Write the response as if you are a character from a Shakespearean play\n"
    "Please generate one instruction per line in your response and start each line with '- '.\n"
    "Do NOT repeat the seed instructions."
)

_VERIFY_HEAD = (
    "You are an expert for writing evaluation functions in Python to evaluate whether a response strictly follows "
    "an instruction.\n"
    "Here is the instruction: "
)
# In the research code this line sits in a non-raw string: "\\n" reaches the model as backslash-n, and "\n"
# as a real line break, so the example's JSON_STR(...) is split over two lines.
_VERIFY_TAIL = (
    "\nPlease write a Python function named `evaluate` to evaluate whether an input string `response` follows this "
    "instruction. If it follows, simply return True, otherwise return False.\n"
    "Please respond with a single JSON that includes the evaluation function in the key `func`, and a list of "
    "three test cases in the key `cases`, which includes an input in the key `input` and an expected output in "
    "the key `output` in (true, false).\n"
    'Here is an example of output JSON format: {"func": "JSON_STR(use only \\n instead of \n)", "cases": '
    '[{"input": "str", "output": "str"}]}.'
)

_CONCAT_HEAD = "Please answer the query strictly following the instruction.\n[instruction] "


def augment_prompt(seed_instructions: list[str]) -> str:
    """The instruction-augmentation prompt with the seed constraints, one per line (paper Fig. 13)."""
    return _AUGMENT_HEAD + "\n".join(seed_instructions) + _AUGMENT_TAIL


def verification_prompt(instruction: str) -> str:
    """The prompt asking for an `evaluate(response)` function and three test cases as JSON (paper Fig. 14)."""
    return _VERIFY_HEAD + instruction + _VERIFY_TAIL


def concat_prompt(instruction: str, query: str) -> str:
    """A user query to answer under a verified format constraint (the seed's 4_Concat step)."""
    return _CONCAT_HEAD + instruction + "\n[Query] " + query
