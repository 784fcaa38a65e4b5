"""The Hydra configs compose into the typed Config: defaults, groups, overrides and typos."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from engine.config import Config, config_hash, register, to_config

CONF = str(Path(__file__).resolve().parents[2] / "conf")
register()


def _compose(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=list(overrides)))


def test_defaults_are_the_embedded_smollm2_on_the_demo_seeds():
    cfg = _compose()
    assert (cfg.model.name, cfg.model.embedded, cfg.model.path) == ("smollm2-135m", "smollm2-135m", None)
    assert cfg.data.name == "demo" and cfg.data.path is None and cfg.rounds == 1
    assert (cfg.recipe.evolve.temperature, cfg.recipe.evolve.top_p) == (0.7, 0.95)  # paper A.1
    assert cfg.recipe.respond.temperature == 0.0 and cfg.recipe.breadth
    assert cfg.scoring.enabled and cfg.select.by == "ic_ifd"
    assert cfg.run.output_dir == "outputs/evol_instruct/demo/smollm2-135m/rounds-1"


def test_groups_and_overrides_reach_the_typed_config():
    cfg = _compose("model=tiny", "scorer=tiny", "rounds=3", "experiment=demo", "data=file", "data.path=/x.jsonl")
    assert cfg.model.name == "tiny" and cfg.scorer.embedded == "tiny"
    assert cfg.recipe.evolve.max_new_tokens == 48 and cfg.select.fraction == 0.5
    assert cfg.data.path == "/x.jsonl" and cfg.run.output_dir.endswith("tiny/rounds-3")


def test_unknown_keys_and_wrong_types_are_refused():
    with pytest.raises(ConfigCompositionException):
        _compose("model.bogus=1")
    with pytest.raises(Exception, match="rounds"):
        _compose("rounds=many")


def test_config_hash_ignores_the_output_dir_but_not_the_settings():
    a, b, c = _compose(), _compose("run.output_dir=/elsewhere"), _compose("recipe.evolve.temperature=0.5")
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_a_resumed_run_may_change_where_and_how_fast_it_runs():
    base = config_hash(_compose())
    assert config_hash(_compose("cluster.pool_size=4", "cluster.batch_size=64", "run.shard_rows=50")) == base
    assert config_hash(_compose("run.seed=1")) != base and config_hash(_compose("data.max_chars=10")) != base
