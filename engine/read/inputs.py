"""What a run reads, settled on the driver before any model loads: the input files (a path, or an HF dataset in the
local cache, never downloaded), the shape of their rows (`data.format`, `data.fields`, or guessed by `auto`), and
the fail-fast check that stops a run whose first rows are all rejected for one schema reason."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from engine.config import ConfigError, DataConfig
from engine.read.readers import InputError, ReadPolicy, first_rows, iter_records
from engine.read.shapes import (
    COMMON_NAMES,
    Shape,
    explain_shape,
    guess_shape,
    instruction_candidates,
    make_shape,
    overrides_for,
)
from engine.rows.records import STATUS_OK

log = logging.getLogger("engine.read")

# Reasons that, when every one of the first rows has the same one, mean the file's shape is wrong, not a row.
SCHEMA_REASONS = ("missing_field", "not_a_string", "not_an_object", "bad_conversation", "malformed_json",
                  "malformed_csv", "invalid_utf8")


def hf_cache_files(data: DataConfig) -> list[Path]:
    """The Arrow files of HF dataset `data.name` (config, split) in the local cache. Offline mode is switched on
    first, so `datasets` never reaches the Hub; a dataset that is not cached is one InputError sentence."""
    if "[" in data.split:
        raise ConfigError(f"data.split={data.split!r}: name a whole split; data.limit keeps the first N rows")
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets  # heavy: only for data=hf

    datasets.config.HF_HUB_OFFLINE = True  # read at call time; the variables above only count before the import
    cache = Path(data.cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()
    what = f"HF dataset {data.name!r}" + (f" (config {data.config!r})" if data.config else "")
    try:
        ds = datasets.load_dataset(data.name, data.config, split=data.split, cache_dir=str(cache),
                                   download_mode="reuse_dataset_if_exists")
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, ValueError… for "not here"
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{what} split {data.split!r} is not in the local HF cache {cache}, and this engine never "
                         f"downloads: load it once where the Hub is reachable (datasets.load_dataset) and copy the "
                         f"cache, or set data.cache_dir ({cause})") from err
    files = [Path(entry["filename"]) for entry in ds.cache_files]
    if not files:
        raise InputError(f"{what} split {data.split!r} is in memory only, with no Arrow files in the cache {cache}")
    log.info("%s split %s: %d rows from %d cached Arrow file(s) under %s", what, data.split, ds.num_rows,
             len(files), cache)
    return files


def resolve_shape(data: DataConfig, files: list[Path]) -> Shape:
    """The shape the run reads its rows with: `data.format` with `data.fields` over it, or for `auto` what the
    first `data.schema_check_rows` rows suggest (logged; the runner records it in the manifest and summary)."""
    if data.source not in ("file", "hf"):
        raise ConfigError(f"data.source must be file or hf, not {data.source!r}")
    overrides = {name: path for name, path in asdict(data.fields).items() if path}
    try:
        if data.format != "auto":
            return make_shape(data.format, overrides)
        guess, why = explain_shape(first_rows(files, max(1, data.schema_check_rows)))
        base = guess or make_shape("alpaca", {})
        shape = make_shape(base.format, {**dict(base.fields), **overrides})
    except ValueError as err:
        raise ConfigError(str(err)) from err
    how = f"guessed from the first rows: {why}" if guess else f"{why} in the first rows: the alpaca names"
    log.info("data.format=auto: reading the rows as %s, %s (%s)", shape.format, _mapping_text(shape), how)
    return shape


def _mapping_text(shape: Shape) -> str:
    return ", ".join(f"{name} <- {path}" for name, path in shape.fields)


def check_schema(files: list[Path], shape: Shape, data: DataConfig, rows: int) -> None:
    """Raise one InputError when the first `rows` rows are all rejected for the same schema reason: it names the
    columns found, the option to set and, when `auto` can guess the shape, the exact override that reads them."""
    if rows <= 0 or not files:
        return
    outcomes = _first_outcomes(files, shape, rows)
    reasons = Counter(reason for reason, _ in outcomes)
    if not outcomes or STATUS_OK in reasons or len(reasons) != 1 or next(iter(reasons)) not in SCHEMA_REASONS:
        return
    sample = first_rows(files, rows)
    where = data.name if data.source == "hf" else (data.path or files[0])
    lines = [f"cannot read {where}: the first {len(outcomes)} rows were all rejected, e.g. {outcomes[0][1]}.",
             f"Columns found: {columns_found(sample)}."]
    guess = guess_shape(sample)
    if guess is not None and guess != shape and _reads(files, guess, rows):
        lines.append(f"Set data.format or data.fields.*; this reads them: {overrides_for(guess)}"
                     + ("" if data.format == "auto" else " (data.format=auto finds the same)"))
    elif fixes := _working_candidates(files, sample, rows):
        lines.append("data.format=auto cannot tell which column holds the instruction; name it with one of these, "
                     "each checked against the first rows: "
                     + "; ".join(f"{overrides_for(fix)} (reads {ok} of {len(outcomes)})" for fix, ok in fixes) + ".")
    else:
        known = "/".join(COMMON_NAMES["instruction"])
        lines.append(f"Name the column holding the instruction with data.fields.instruction=<column> (and "
                     f"data.fields.input / data.fields.output; dotted paths reach into nested rows, e.g. "
                     f"instances.0.input), or set data.format=alpaca|dolly|sharegpt|messages; data.format=auto "
                     f"recognises {known} and conversation lists.")
    raise InputError(" ".join(lines))


def _first_outcomes(files: list[Path], shape: Shape, rows: int, quiet: bool = False) -> list[tuple[str, str]]:
    """(reason or "ok", detail) of the first `rows` row slots, read with `shape`; `quiet` keeps the rejects of a
    shape only tried for the message out of the log."""
    outcomes: list[tuple[str, str]] = []
    policy = ReadPolicy(shape=shape)
    level = log.level
    log.setLevel(logging.ERROR if quiet else level)
    try:
        for path in files:
            for batch in iter_records(path, len(outcomes), batch_rows=rows, policy=policy):
                for status, reason, detail in zip(batch["status"], batch["reason"], batch["detail"]):
                    outcomes.append((STATUS_OK if status == STATUS_OK else str(reason), str(detail)))
                    if len(outcomes) >= rows:
                        return outcomes
    finally:
        log.setLevel(level)
    return outcomes


def _working_candidates(files: list[Path], sample: list, rows: int, limit: int = 8) -> list[tuple[Shape, int]]:
    """(shape, rows it reads among the first `rows`) for each path `auto` could take as the instruction whose
    override gets rows through, most rows first; at most `limit` paths are tried."""
    found = []
    for variants in instruction_candidates(sample)[:limit]:
        for shape in variants:
            ok = sum(reason == STATUS_OK for reason, _ in _first_outcomes(files, shape, rows, quiet=True))
            if ok:
                found.append((shape, ok))
                break
    return sorted(found, key=lambda pair: -pair[1])


def _reads(files: list[Path], shape: Shape, rows: int) -> bool:
    """Whether `shape` gets at least one of the first `rows` rows through."""
    return any(reason == STATUS_OK for reason, _ in _first_outcomes(files, shape, rows, quiet=True))


def columns_found(rows: list) -> str:
    """The top-level keys of the sampled rows, in order, with the keys inside a list of objects shown as
    `instances[{input, output}]`; or what the rows are when they are not objects."""
    seen: dict[str, str] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        for key, value in row.items():
            if key not in seen or seen[key] == key:
                inner = value[0] if isinstance(value, list) and value else None
                seen[key] = f"{key}[{{{', '.join(map(str, inner))}}}]" if isinstance(inner, dict) else str(key)
    if seen:
        return ", ".join(seen.values())
    return "none (the rows are not objects)" if any(row is not None for row in rows) else "none (no row parsed)"
