"""AutoIF prompts (paper Figs. 13-14 and the concat step), byte-exact to the research code.

Templates are filled by concatenation, not str.format: instructions and queries may contain braces."""

from __future__ import annotations

from engine.backends.base import Structured

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


# Structured verification (autoif.structured): the answer the prompt asks for, as a grammar. What it writes is a
# ```json fenced block (so json_mode seed and robust both read it) holding exactly VERIFICATION_SCHEMA's JSON:
# {"func": str, "cases": [three {"input": str, "output": bool}]}. A regex, not the JSON schema itself: xgrammar's
# JSON-schema strings either have no length bound (a model that never closes `func` runs out of tokens
# unparsed) or, with maxLength, no escapes at all (no \n: no multi-line function). Here strings are printable
# ASCII without `"`, `\` or backticks (a ``` inside would end the fence; Python has single quotes), and `func` is
# lines of at most FUNC_LINE_CHARS joined by the escape \n, as the prompt asks. So every token writes at least one
# character, and the line count and lengths are cut so the longest answer fits the token budget. (A bounded
# repetition of "a character or a two-character escape" would allow \" and \\ too, but xgrammar then spent up
# to seconds per token on SmolLM2's vocabulary; lines of plain characters cost well under a millisecond.)
VERIFICATION_SCHEMA = {
    "type": "object",
    "properties": {
        "func": {"type": "string", "minLength": 1},
        "cases": {
            "type": "array", "minItems": 3, "maxItems": 3,
            "items": {"type": "object", "properties": {"input": {"type": "string"}, "output": {"type": "boolean"}},
                      "required": ["input", "output"], "additionalProperties": False},
        },
    },
    "required": ["func", "cases"],
    "additionalProperties": False,
}
VERIFICATION_CASES = 3  # the prompt asks for three test cases
FUNC_LINE_CHARS = 80
_JSON_CHAR = r"[ !#-\[\]-_a-~]"  # printable ASCII but " \ `
_NEWLINE = r"\\n"  # the two characters \n: a line break inside the JSON string
_OPEN, _CASES, _CASE_OPEN, _CASE_MID, _CASE_SEP, _CLOSE = (
    '```json\n{"func": "', '", "cases": [', '{"input": "', '", "output": ', ", ", "]}\n```")
_LONGEST_BOOL = len("false") + len("}")


def verification_budget(max_new_tokens: int) -> tuple[int, int, int]:
    """The longest verification answer that fits `max_new_tokens` with the closing end-of-sequence token:
    (lines of `func`, characters per line, characters per case input)."""
    fixed = len(_OPEN) + len(_CASES) + len(_CLOSE) + VERIFICATION_CASES * (
        len(_CASE_OPEN) + len(_CASE_MID) + _LONGEST_BOOL) + (VERIFICATION_CASES - 1) * len(_CASE_SEP)
    room = max_new_tokens - 1 - fixed
    input_chars = min(120, room // 8)
    func_room = room - VERIFICATION_CASES * input_chars
    if func_room < 16:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a structured verification answer "
                         f"(at least {fixed + 1 + 16 + 3 * 2} tokens)")
    width = min(FUNC_LINE_CHARS, func_room)
    lines = (func_room + len("\\n")) // (width + len("\\n"))  # lines x width + (lines - 1) separators
    return lines, width, input_chars


def verification_structured(max_new_tokens: int) -> Structured:
    """The constraint on one verification answer for a budget of `max_new_tokens` (see VERIFICATION_SCHEMA)."""
    lines, width, input_chars = verification_budget(max_new_tokens)
    func = _JSON_CHAR + "{1,%d}" % width
    if lines > 1:
        func += "(" + _NEWLINE + _JSON_CHAR + "{0,%d}){0,%d}" % (width, lines - 1)
    case = (Structured.literal(_CASE_OPEN) + _JSON_CHAR + "{0,%d}" % input_chars + Structured.literal(_CASE_MID)
            + "(true|false)" + Structured.literal("}"))
    cases = Structured.literal(_CASE_SEP).join([case] * VERIFICATION_CASES)
    return Structured(regex=Structured.literal(_OPEN) + func + Structured.literal(_CASES) + cases
                      + Structured.literal(_CLOSE))
