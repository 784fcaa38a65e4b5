"""Where a run's files live: a local folder, or any pyarrow filesystem named by a URI (`s3://bucket/run`,
`gs://bucket/run`, `file:///mnt/shared/run`). Ray-free; every writer and reader of a run folder goes through it.

Commits stay atomic on both kinds:
- local (POSIX) folders: write a temporary name, then rename it over the final one (rename is atomic);
- object stores: rename is a copy there, so a file is written under its final name directly (an object appears
  whole when its upload completes, or not at all) and the run manifest's entry is the commit point: a file the
  manifest does not list is not part of the run, and a resumed run deletes it."""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Storage:
    """A filesystem and the run folder's path on it; `local` is True where rename is atomic (the OS's own)."""

    fs: pafs.FileSystem = field(compare=False)
    root: Path

    @classmethod
    def resolve(cls, output_dir: "str | Path | Storage") -> "Storage":
        """`run.output_dir` as given: a plain path stays the local folder it names (relative paths included),
        a URI is opened with pyarrow (credentials from pyarrow's usual environment variables)."""
        if isinstance(output_dir, Storage):
            return output_dir
        text = str(output_dir)
        if "://" not in text:
            return cls(pafs.LocalFileSystem(), Path(text))
        fs, path = pafs.FileSystem.from_uri(text)
        return cls(fs, Path(path))

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def ray_filesystem(self) -> pafs.FileSystem | None:
        """What to hand Ray Data's read/write calls: None for a local folder (Ray's default), else the filesystem."""
        return None if self.local else self.fs

    def describe(self, path: Path | None = None) -> str:
        """A path as a user would type it (the URI's scheme kept for remote filesystems)."""
        path = self.root if path is None else path
        return str(path) if self.local else f"{self.fs.type_name}://{path}"

    # --- folders
    def makedirs(self, folder: Path) -> None:
        if self.local:
            Path(folder).mkdir(parents=True, exist_ok=True)
        else:
            self.fs.create_dir(str(folder), recursive=True)

    def exists(self, path: Path) -> bool:
        if self.local:
            return Path(path).exists()
        return self.fs.get_file_info(str(path)).type != pafs.FileType.NotFound

    def is_dir(self, path: Path) -> bool:
        if self.local:
            return Path(path).is_dir()
        return self.fs.get_file_info(str(path)).type == pafs.FileType.Directory

    def remove(self, path: Path) -> None:
        """Delete a file or a whole folder; nothing happens if it is not there."""
        if self.local:
            path = Path(path)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            return
        kind = self.fs.get_file_info(str(path)).type
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(str(path))
        elif kind == pafs.FileType.File:
            self.fs.delete_file(str(path))

    def entries(self, folder: Path) -> list[tuple[Path, bool]]:
        """(path, is a folder) of everything directly in `folder`, sorted by path; [] if there is no folder."""
        if self.local:
            folder = Path(folder)
            return sorted((p, p.is_dir()) for p in folder.glob("*")) if folder.is_dir() else []
        if not self.is_dir(folder):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(str(folder), allow_not_found=True))
        return sorted((Path(info.path), info.type == pafs.FileType.Directory) for info in infos)

    def files(self, folder: Path, suffix: str = "") -> list[Path]:
        """The files directly in `folder` whose names end with `suffix`, sorted."""
        return [path for path, is_dir in self.entries(folder) if not is_dir and path.name.endswith(suffix)]

    # --- whole files
    def read_text(self, path: Path) -> str:
        if self.local:
            return Path(path).read_text(encoding="utf-8")
        with self.fs.open_input_stream(str(path)) as handle:
            return handle.read().decode("utf-8")

    def write_text(self, path: Path, text: str, durable: bool = False) -> None:
        """Replace a file's content atomically (`durable`: fsynced before the rename, for the manifest)."""
        with self.output(path, text=True, durable=durable) as handle:
            handle.write(text)

    def append_text(self, path: Path, text: str) -> None:
        """Append to a local file and fsync it (the manifest's journal lines). Object stores cannot append: the
        manifest rewrites its whole object there instead."""
        if not self.local:
            raise ValueError(f"{self.describe(path)}: appending is only for local folders")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def open_input(self, path: Path):
        """A binary stream to read."""
        return open(path, "rb") if self.local else self.fs.open_input_stream(str(path))

    # --- Parquet
    def parquet_file(self, path: Path) -> pq.ParquetFile:
        return pq.ParquetFile(path if self.local else self.fs.open_input_file(str(path)))

    def read_table(self, path: Path, columns: list[str] | None = None) -> pa.Table:
        """A Parquet file or folder of parts."""
        return pq.read_table(str(path), columns=columns, filesystem=self.ray_filesystem)

    def write_table(self, table: pa.Table, path: Path, tmp_name: str | None = None) -> None:
        """Write a Parquet file atomically: locally under `tmp_name` (default NAME.tmp) beside it, then renamed;
        on an object store under its final name (see the module docstring)."""
        if self.local:
            tmp = Path(path).with_name(tmp_name or Path(path).name + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        else:
            self.fs.create_dir(str(Path(path).parent), recursive=True)
            pq.write_table(table, str(path), filesystem=self.fs)

    def output(self, path: Path, text: bool = False, durable: bool = False) -> "PendingFile":
        """A file being written: `commit()` makes it appear under `path` whole, `discard()` drops it; as a context
        manager, commits on success and discards on an exception."""
        return PendingFile(self, Path(path), text, durable)


class PendingFile:
    """One output file in the making (see Storage.output)."""

    def __init__(self, storage: Storage, path: Path, text: bool, durable: bool):
        self.storage, self.path, self.durable = storage, path, durable
        storage.makedirs(path.parent)
        if storage.local:
            self.tmp = path.with_name(path.name + ".tmp")
            raw = open(self.tmp, "wb")
        else:
            self.tmp = None
            raw = storage.fs.open_output_stream(str(path))
        self.raw = raw
        self.handle = io.TextIOWrapper(raw, encoding="utf-8") if text else raw

    def commit(self) -> None:
        self.handle.flush()
        if self.tmp is not None and self.durable:
            os.fsync(self.raw.fileno())
        self.handle.close()
        if self.tmp is not None:
            os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.storage.remove(self.tmp if self.tmp is not None else self.path)

    def __enter__(self):
        return self.handle

    def __exit__(self, kind, value, traceback) -> None:
        self.commit() if kind is None else self.discard()


def write_json(path: Path, data: dict, storage: Storage | None = None) -> None:
    """Write JSON atomically (temp file then rename locally; one upload on an object store)."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    (storage or Storage.resolve(Path(path).parent)).write_text(path, text)
