"""Live progress of a round: which mode (run.progress) and the board the stages report finished rows to."""

from __future__ import annotations

from engine.config import ConfigError


def progress_mode(value) -> str:
    """run.progress as one of line | verbose | off (true and false, from older configs, mean line and off)."""
    mode = {"true": "line", "false": "off"}.get(str(value).lower(), str(value).lower())
    if mode not in ("line", "verbose", "off"):
        raise ConfigError(f"run.progress={value!r}: use line, verbose or off")
    return mode


class ProgressBoard:
    """Rows each stage has finished in this round, as its actors report them, and the latest occupancy of each
    vLLM engine; the driver reads it to log."""

    def __init__(self):
        self.rows: dict[str, int] = {}
        self.engines: dict[str, dict[str, dict]] = {}  # stage -> reporting actor -> its engine's latest snapshot

    def add(self, stage: str, rows: int, engine: dict | None = None, actor: str = "") -> None:
        self.rows[stage] = self.rows.get(stage, 0) + rows
        if engine is not None:
            self.engines.setdefault(stage, {})[actor] = engine

    def totals(self) -> dict[str, int]:
        return dict(self.rows)

    def engine_snapshots(self) -> dict[str, list[dict]]:
        return {stage: list(by_actor.values()) for stage, by_actor in self.engines.items()}
