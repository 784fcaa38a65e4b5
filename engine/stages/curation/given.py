"""GivenOutputs: the first stage of recipe=curate. It keeps each row's own answer in `given_output` (so a run that
answers every row can be compared with the data set's answers) and, when nothing may answer (`curate.respond=never`),
rejects a row without an answer at once, naming its file and line, rather than letting the scorer find it empty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.rows.records import has_output, ok_mask, reject

RESPOND_MODES = ("missing", "always", "never")


@dataclass(frozen=True)
class GivenArgs:
    """What GivenOutputs uses: curate.respond (one of RESPOND_MODES; recipe=curate refuses others when built)."""

    respond: str = "missing"


class GivenOutputs:
    """Copies `output` into `given_output`; with respond=never, rejects ok rows without one (`no_output`)."""

    uses_model = False

    def __init__(self, args: GivenArgs, torch_threads: int | None = None):
        self.respond = args.respond

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch["given_output"] = np.asarray(batch["output"], dtype=object).copy()
        if self.respond == "never":
            missing = ok_mask(batch) & ~has_output(batch)
            details = [f"{file}:{line}: the row has no output and curate.respond=never (set curate.respond=missing to "
                       f"answer it with the model)" for file, line in zip(batch["source_file"], batch["source_line"])]
            reject(batch, missing, "no_output", details, stage="given_outputs")
        return batch
