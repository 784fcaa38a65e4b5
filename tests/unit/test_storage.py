"""A run folder on a pyarrow filesystem (engine/state/storage.py): plain paths stay local folders, URIs open their
filesystem, and the manifest, ledger commits and round split work on an object-store-like filesystem (pyarrow's
in-memory mock, which cannot append and whose rename is not used) exactly as on a local folder. Ray tasks cannot
see an in-process mock filesystem, so a Ray run cannot use one: here the Ray-free round loop runs on it with an
in-process executor, and tests/integration/test_shared_output.py runs Ray on a file:// URI."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from engine.config import compose, hydra_dir
from engine.run import pipeline
from engine.run.chain import StageChain
from engine.state.layout import RunLayout
from engine.state.ledger import commit_shard, done_keys, drop_orphans, without_done
from engine.state.manifest import MANIFEST, Manifest, read_lines
from engine.state.storage import Storage, write_json
from engine.write.sinks import split_round
from tests.unit.test_pipeline import InProcess
from tests.unit.test_sinks import _ledger


@pytest.fixture()
def bucket() -> Storage:
    """A run folder `bucket/run` on pyarrow's in-memory filesystem."""
    return Storage(pafs._MockFileSystem(), Path("bucket/run"))


def _names(storage: Storage, folder: Path) -> list[str]:
    return [path.name for path in storage.files(folder)]


def test_a_plain_path_stays_the_local_folder_it_names_and_a_uri_opens_its_filesystem(tmp_path):
    plain = Storage.resolve("outputs/run")
    assert plain.local and plain.root == Path("outputs/run") and plain.ray_filesystem is None
    mounted = Storage.resolve(f"file://{tmp_path}/run")
    assert mounted.local and mounted.root == tmp_path / "run"
    remote = Storage.resolve("mock:///bucket/run")
    assert not remote.local and remote.fs.type_name == "mock" and remote.ray_filesystem is remote.fs
    assert RunLayout.at("mock:///bucket/run").data(2) == Path("bucket/run/data/round_2")


def test_hydra_keeps_its_record_in_a_local_run_folder_or_a_local_one_named_after_the_uri():
    assert hydra_dir("outputs/run") == "outputs/run"
    assert hydra_dir("file:///mnt/shared/run") == "/mnt/shared/run"
    assert hydra_dir("s3://bucket/runs/a") == "outputs/remote/s3/bucket/runs/a"


def test_files_are_written_whole_or_not_at_all(bucket):
    path = bucket.root / "summary.json"
    write_json(path, {"rows_in": 3}, bucket)
    assert json.loads(bucket.read_text(path)) == {"rows_in": 3}
    with pytest.raises(RuntimeError):
        with bucket.output(bucket.root / "half.jsonl", text=True) as handle:
            handle.write("one line\n")
            raise RuntimeError("the task died mid-write")
    assert _names(bucket, bucket.root) == ["summary.json"]
    bucket.remove(bucket.root)
    assert not bucket.exists(bucket.root) and bucket.files(bucket.root) == []


def test_a_local_commit_renames_into_place_and_leaves_no_temporary_file(tmp_path):
    local = Storage.resolve(tmp_path)
    with local.output(tmp_path / "a" / "b.jsonl", text=True) as handle:
        handle.write("é\n")
    assert (tmp_path / "a" / "b.jsonl").read_bytes() == "é\n".encode()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.jsonl"]


def test_the_manifest_rewrites_its_whole_object_where_it_cannot_append(bucket):
    m = Manifest.open(bucket, "abc", [], resume=True)
    m.record_shard(1, "part-1.parquet", rows=10, ok=8)
    m.record_shard(1, "part-2.parquet", rows=5, ok=5)
    path = bucket.root / MANIFEST
    assert [e["kind"] for e in read_lines(path, bucket)] == ["run", "shard", "shard"]
    raw = bucket.read_text(path)
    bucket.write_text(path, raw + '{"kind": "shard", "round": 1, "fi')  # an upload of a torn line
    again = Manifest.open(bucket, "abc", [], resume=True)
    assert sorted(again.shards(1)) == ["part-1.parquet", "part-2.parquet"]
    again.record_round(1, {"rows_in": 15})
    assert Manifest.open(bucket, "abc", [], resume=True).round_counts(1) == {"rows_in": 15}
    assert Manifest.open(bucket, "abc", [], resume=False).entries == []


def _shard(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "parent_id": [f"p-{i}" for i in ids], "round": [1] * len(ids),
                     "status": ["ok"] * len(ids)})


def test_a_retried_commit_rewrites_its_name_and_an_unjournaled_shard_is_dropped_on_resume(bucket):
    ledger = RunLayout(bucket.root, bucket).ledger(1)
    manifest = Manifest.open(bucket, "abc", [], resume=True)
    first = commit_shard(_shard(["a", "b"]), str(ledger), bucket).to_pylist()[0]
    manifest.record_shard(1, first["file"], first["rows"], first["ok"])
    retried = commit_shard(_shard(["a", "b"]), str(ledger), bucket).to_pylist()[0]  # the task ran twice
    assert retried == first and _names(bucket, ledger) == [first["file"]]
    orphan = commit_shard(_shard(["c"]), str(ledger), bucket).to_pylist()[0]  # the driver died before journaling
    assert sorted(_names(bucket, ledger)) == sorted([first["file"], orphan["file"]])

    resumed = Manifest.open(bucket, "abc", [], resume=True)
    drop_orphans(ledger, resumed.shards(1), bucket)
    assert _names(bucket, ledger) == [first["file"]]
    assert done_keys([ledger / first["file"]], 1, bucket).to_pylist() == ["p-a", "p-b"]


def test_a_round_splits_into_the_same_bytes_as_in_a_local_folder(bucket, tmp_path):
    a = _ledger(tmp_path / "a.parquet", ["one", "two", "three"], rejected=[1])
    b = _ledger(tmp_path / "b.parquet", ["four", "five"], rejected=[0])
    local_out = tmp_path / "out"
    local_counts = split_round([a, b], local_out, 1)
    for path in (a, b):  # the ledger shards on the mock filesystem too
        bucket.write_table(Storage.resolve(path).read_table(path), bucket.root / "_ledger" / path.name)
    counts = split_round([bucket.root / "_ledger" / p.name for p in (a, b)], bucket, 1)

    assert counts.as_dict() == local_counts.as_dict() and (counts.rows_out, counts.rows_rejected) == (3, 2)
    layout, local = RunLayout(bucket.root, bucket), RunLayout(local_out)
    for kind in ("alpaca", "sharegpt", "messages", "rejects"):
        with bucket.open_input(layout.export(kind, 1)) as handle:
            assert handle.read() == local.export(kind, 1).read_bytes()
        assert not bucket.exists(layout.part(kind, 1, 0).parent)  # the parts are gone
    assert layout.rounds() == [1] and [p.name for p in layout.data_files(1)] == ["part-00000.parquet",
                                                                                 "part-00001.parquet"]
    assert bucket.read_table(layout.data(1)).equals(Storage.resolve(local_out).read_table(local.data(1)))


class OnStorage(InProcess):
    """The in-process executor of test_pipeline, reading and writing the run folder through a Storage (what
    RayExecutor does in its tasks)."""

    def __init__(self, storage: Storage):
        super().__init__()
        self.storage = storage

    def read(self, files):
        return pa.concat_tables([self.storage.read_table(f) for f in files])

    def drop_done(self, ds, files, round_num):
        return without_done(ds, done_keys(files, round_num, self.storage))

    def stream(self, ds, stage_specs, round_num, expected, ledger, shard_rows):
        self.calls.append(f"round {round_num}")
        chain = StageChain(stage_specs)
        for lo in range(0, ds.num_rows, shard_rows):
            part = ds.slice(lo, shard_rows)
            out = chain({k: part[k].to_numpy(zero_copy_only=False) for k in part.column_names})
            written = commit_shard(pa.table(out), str(ledger), self.storage).to_pylist()
            yield from ((w["file"], w["rows"], w["ok"]) for w in written)

    def apply(self, files, spec, folder):
        table = self.read(files)
        out = StageChain([spec])({k: table[k].to_numpy(zero_copy_only=False) for k in table.column_names})
        self.storage.write_table(pa.table(out), folder / "part-0.parquet")
        return [folder / "part-0.parquet"]

    def split(self, files, layout, round_num):
        return split_round(files, layout.store, round_num)


def test_a_whole_run_on_an_object_store_commits_through_the_manifest_and_resumes(bucket, monkeypatch, tmp_path):
    """The round loop on the mock filesystem (the pipeline resolves mock:// to the fixture's instance): every row
    once, and a rerun after a crash keeps round 1, drops an unjournaled round-2 shard and rebuilds round 2."""
    resolve = Storage.resolve.__func__
    monkeypatch.setattr(Storage, "resolve", classmethod(
        lambda cls, where: bucket if str(where).startswith("mock://") else resolve(cls, where)))
    cfg = compose(["model=echo", "scorer=echo"])
    cfg.run.output_dir, cfg.run.progress, cfg.run.shard_rows = "mock:///bucket/run", "off", 5
    cfg.data.limit, cfg.rounds, cfg.select.fraction = 12, 2, 0.5
    first = pipeline.run(cfg, OnStorage(bucket))
    assert first["rows_conserved"] and first["rows_in"] == 12
    layout = RunLayout(bucket.root, bucket)
    kept = bucket.read_table(layout.data(2)).sort_by("id")
    assert kept.num_rows == first["rows_out"] == 6
    assert bucket.exists(layout.summary) and bucket.exists(layout.dataset_info)
    assert bucket.entries(bucket.root / "_ledger") == []  # every round's ledger dropped once journaled

    path = bucket.root / MANIFEST
    entries = read_lines(path, bucket)
    cut = next(i for i, e in enumerate(entries) if e["kind"] == "round" and e["round"] == 1) + 1
    bucket.write_text(path, "".join(json.dumps(e) + "\n" for e in entries[:cut]))
    orphan = commit_shard(_shard(["x"]), str(layout.ledger(2)), bucket).to_pylist()[0]["file"]
    executor = OnStorage(bucket)
    again = pipeline.run(cfg, executor)
    assert executor.calls == ["round 2"]  # round 1 was journaled: not recomputed
    assert again["per_round"][0] == first["per_round"][0] and again["rows_out"] == first["rows_out"]
    assert not bucket.exists(layout.ledger(2) / orphan)
    assert bucket.read_table(layout.data(2)).sort_by("id").equals(kept)
