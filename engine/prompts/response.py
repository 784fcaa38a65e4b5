"""The response-generation prompt (paper Fig. 16), byte-exact."""

from __future__ import annotations


def response_prompt(instruction: str, input_text: str) -> str:
    """The prompt that asks the responder model to answer an (evolved) instruction."""
    # Concatenation, not str.format: instructions may contain braces.
    if input_text:
        return (
            "Given the following instruction and input, please provide a comprehensive and accurate response.\n"
            "Instruction: " + instruction + "\nInput: " + input_text + "\nResponse: "
        )
    return (
        "Given the following instruction, please provide a comprehensive and accurate response.\n"
        "Instruction: " + instruction + "\nResponse: "
    )


def clean_response(text: str) -> str:
    """The seed's post-processing of a response: strip, then strip leading and trailing newlines."""
    return text.strip().lstrip("\n").rstrip("\n")
