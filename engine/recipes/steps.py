"""Whole-round steps a recipe declares after a round: the selection cut over every scored row."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.config import SelectConfig
from engine.recipes.spec import Resources, StageSpec
from engine.rows.records import STATUS_OK
from engine.stages.scoring.select import RANKINGS, Cut, Select, plan_cut
from engine.state.storage import Storage

log = logging.getLogger("engine.recipes")


class WholeRoundStep(ABC):
    """A step that needs every row of a round at once (the selection cut): planned on the driver from the
    round's committed shards, then applied row by row as one stage."""

    name: str = "whole_round"

    @abstractmethod
    def plan(self, files: list[Path], storage: Storage) -> Any:
        """Read what the step needs from the round's shards (a few columns, on `storage`) and decide."""

    @abstractmethod
    def spec(self, plan: Any) -> StageSpec:
        """The stage that applies the decision to each row."""

    def record(self, plan: Any) -> Optional[dict]:
        """What the round's counts keep about the decision (summary.json["selection"])."""
        return None


class SelectTop(WholeRoundStep):
    """Keep the top of the round by a score (select.*): the exact global cut over every ok row (phase 1, three
    columns read on the driver), then the Select stage rejects the rest with `not_selected` (phase 2)."""

    name = "select"

    def __init__(self, settings: SelectConfig, resources: Resources):
        self.settings, self.resources = settings, resources

    def plan(self, files: list[Path], storage: Storage) -> Cut:
        column = RANKINGS[self.settings.by][0]
        table = pa.concat_tables(storage.read_table(f, columns=["status", "id", "ifd", column]) for f in files)
        table = table.filter(pc.equal(table["status"], STATUS_OK))
        scores = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
        cut = plan_cut(scores, table["id"].to_numpy(zero_copy_only=False),
                       table["ifd"].to_numpy(zero_copy_only=False), self.settings)
        log.info("selection by %s: keep %d of %d, cut value %s", cut.by, cut.kept, cut.candidates, cut.value)
        return cut

    def spec(self, plan: Cut) -> StageSpec:
        return StageSpec(Select, plan, self.resources)

    def record(self, plan: Cut) -> dict:
        return plan.as_dict()
