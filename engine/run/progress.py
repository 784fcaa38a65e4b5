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
    """Rows each stage has finished in this round, as its actors report them; the driver reads it to log."""

    def __init__(self):
        self.rows: dict[str, int] = {}

    def add(self, stage: str, rows: int) -> None:
        self.rows[stage] = self.rows.get(stage, 0) + rows

    def totals(self) -> dict[str, int]:
        return dict(self.rows)
