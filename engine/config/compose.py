"""Composing a Config: the Hydra schema registration, the typed conversion, the config hash a resume checks, and
compose() for the tools that read a finished run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from engine.config.schema import Config


def register() -> None:
    """Register the schema so `conf/config.yaml` can extend it (`defaults: [config_schema, ...]`), and the
    resolvers its YAML uses (`hydra.run.dir`; `${pkg_data:<file>}` for a data set shipped in engine/data/)."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    OmegaConf.register_new_resolver("hydra_dir", hydra_dir, replace=True)
    OmegaConf.register_new_resolver("pkg_data", pkg_data, replace=True)


def pkg_data(name: str) -> str:
    """The path of a data file shipped inside the package (engine/data/<name>), wherever it is installed."""
    return str(Path(__file__).resolve().parents[1] / "data" / name)


def hydra_dir(output_dir: str) -> str:
    """Where Hydra keeps its .hydra/ record of a run: the run folder when it is local (a plain path or a file://
    URI); for an object-store URI, a local folder named after it (Hydra writes local files only; the engine saves
    config.yaml in the run folder itself)."""
    if "://" not in output_dir:
        return output_dir
    scheme, path = output_dir.split("://", 1)
    return path if scheme == "file" else str(Path("outputs") / "remote" / scheme / path.lstrip("/"))


def to_config(cfg: Any) -> Config:
    """A Hydra DictConfig (or a plain dict) as the typed Config object the stages receive."""
    merged = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    return OmegaConf.to_object(merged)


# Keys that change where or how fast a run goes, not what it writes: a resumed run may change them.
NOT_HASHED = {"run": ("output_dir", "progress", "progress_interval_s", "cost", "resume", "shard_rows",
                      "segment_rows"), "cluster": None, "stages": None, "analysis": None,
              "compare": None}  # each evolver's own run hashes its model


def config_hash(cfg: Config, resolved: dict | None = None) -> str:
    """A short digest of everything that changes outputs (output directory, cluster and progress excluded), and of
    what the run resolved from its inputs (`resolved`, e.g. the field mapping `data.format=auto` chose)."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if resolved:
        data["resolved"] = resolved
    for group, keys in NOT_HASHED.items():
        if keys is None:
            data.pop(group, None)
        else:
            for key in keys:
                data[group].pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")  # conf/config.yaml and its groups


def compose(overrides: list[str]) -> Config:
    """The engine's config (conf/config.yaml) with Hydra-style overrides, as the typed Config, for the tools that
    read a finished run (analyze, pairwise) rather than write one: run.output_dir is not theirs to choose."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()  # conf/config.yaml extends the schema: it must be in the ConfigStore
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        raw = hydra_compose(config_name="config", overrides=overrides)
    OmegaConf.set_struct(raw, False)
    raw.run.output_dir = "unused"  # analysis writes into RUN_DIR/analysis, the pairwise judge into its own folder
    return to_config(raw)
