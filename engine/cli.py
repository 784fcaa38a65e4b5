"""`python -m engine …`: compose the config, run the recipe, save the resolved config and the summary."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from engine.backends.base import BackendUnavailable
from engine.backends.feeder import EngineFailure
from engine.config import CONF_DIR, ConfigError, register, to_config
from engine.read.readers import InputError
from engine.state.layout import RunLayout
from engine.state.storage import Storage

log = logging.getLogger("engine")
NO_ROWS_EXIT = 3  # the run finished and wrote its outputs, but kept no row (2: refused before running)
ENGINE_FAILED_EXIT = 4  # a model engine died during the run (its committed shards are reused by a rerun)

register()


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(raw: DictConfig) -> None:
    cfg = to_config(raw)
    storage = Storage.resolve(cfg.run.output_dir)
    out = storage.root
    from engine.run.runner import run  # imports ray: only once the config is valid

    try:
        if cfg.compare.evolvers:  # experiment=slm_vs_llm: every evolver on the same seeds, joined by seed id
            from engine.commands.compare import run_comparison

            if not storage.local:
                raise ConfigError(f"an evolver comparison writes to a local or mounted folder; "
                                  f"run.output_dir={cfg.run.output_dir} is on {storage.fs.type_name}")
            summary = run_comparison(cfg, config_text=OmegaConf.to_yaml(raw, resolve=True))
            print(json.dumps(summary["join"]))
            dirs = "".join(f"{name}/, " for name in summary["compare"])
            print(f"outputs in {out.resolve()} ({dirs}side_by_side/, summary.json)")
            if cfg.analysis.report:  # the evolvers side by side
                layout = RunLayout(out)
                write_report([layout.evolver(name) for name in summary["compare"]], layout.report)
            return
        summary = run(cfg, config_text=OmegaConf.to_yaml(raw, resolve=True))
    except (InputError, BackendUnavailable, ConfigError) as err:
        log.error("%s", err)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 - only an engine failure is turned into one line; the rest re-raised
        failure = engine_failure(err)
        if failure is None:
            raise
        log.error("%s; the shards committed so far are kept: rerun the same command to resume", failure)
        sys.exit(ENGINE_FAILED_EXIT)
    keys = ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "wall_time_s")
    print(json.dumps({k: summary[k] for k in keys}))
    where = out.resolve() if storage.local else storage.describe()
    print(f"outputs in {where} (summary.json, data/, alpaca/, sharegpt/, messages/, rejects/, config.yaml)")
    if cfg.analysis.report and not storage.local:
        log.info("no HTML report for an output on %s: copy %s to a local folder and run "
                 "`python -m engine.report DIR`", storage.fs.type_name, storage.describe())
    elif cfg.analysis.report:
        write_report([out])
    if summary["rows_out"] == 0:
        log.error("%s", no_rows_message(summary, out))
        sys.exit(NO_ROWS_EXIT)


def engine_failure(err: BaseException) -> str | None:
    """The one line of an EngineFailure (backends/feeder.py) anywhere in `err`'s chain (Ray wraps an actor's
    error in its own), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, EngineFailure):
            original = getattr(err, "cause", err)  # Ray's RayTaskError keeps the actor's own exception as `cause`
            return str(original if isinstance(original, EngineFailure) else err).strip().splitlines()[0]
        err = err.__cause__ or err.__context__
    return None


def no_rows_message(summary: dict, out: Path) -> str:
    """Why a finished run kept nothing, in one line: where the rows went, by reason."""
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary["rejected_by_reason"].items(),
                                                                 key=lambda item: -item[1])) or "none"
    return (f"0 rows out: {summary['rows_in']} rows in, {summary['rows_rejected']} rejected ({reasons}) over "
            f"{summary['rounds_completed']} round(s); every row is in {RunLayout(out).rejects_folder}/ with its reason")


def write_report(run_dirs: list[Path], out: Path | None = None) -> None:
    """The HTML report of finished runs; a report that cannot be drawn is logged, it does not fail the run
    (its data is written already, and `python -m engine.report` can retry)."""
    from engine.report.build import ReportError, build_report

    try:
        print(f"report: {build_report(run_dirs, out).resolve()}")
    except ReportError as err:
        log.warning("no report written: %s", err)


def main() -> None:
    # Hydra's parser reads the overrides as one run of arguments: `experiment=x -m model=a,b` would leave
    # `model=a,b` unrecognised, so the multirun flag moves to the front.
    flags = [arg for arg in sys.argv[1:] if arg in ("-m", "--multirun")]
    sys.argv = [sys.argv[0], *flags, *(arg for arg in sys.argv[1:] if arg not in flags)]
    app()


if __name__ == "__main__":
    main()
