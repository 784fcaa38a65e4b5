"""A sandbox for untrusted, LLM-written Python verifier functions (AutoIF).

    with Sandbox(Limits(wall_s=2)) as sandbox:
        verdicts = sandbox.check("def evaluate(response):\\n    return len(response) < 10", [("short", True)])

Verifier code never runs in the engine process: each job gets a fresh, isolated child interpreter. README.md in this
directory states what is contained and what is not.
"""

from engine.sandbox.supervisor import Limits, Sandbox, Verdict

__all__ = ["Limits", "Sandbox", "Verdict"]
