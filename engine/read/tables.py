"""Columnar seed inputs behind one small interface: parquet, saved HF datasets, HF Arrow cache files, CSV and TSV
(parsed by pyarrow). Each gives its column names, its row count and batches of chosen columns as Python lists."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq


class TableError(ValueError):
    """A table that cannot be opened at all (readers turn it into an InputError naming the file)."""


@dataclass
class Table:
    """A columnar input: `read(columns, batch_rows)` yields {column: values} batches of its parsed rows.
    `invalid` holds (line, message) for CSV/TSV lines the parser could not split into the header's columns;
    `header_lines` is how many lines come before the first row (a CSV's header)."""

    names: list[str]
    num_rows: int
    read: Callable[[list[str], int], Iterator[dict[str, list]]]
    invalid: list[tuple[int, str]] = field(default_factory=list)
    header_lines: int = 0

    def lines(self) -> Iterator[int]:
        """The line of each parsed row in order: its row number, after the header and any invalid lines before
        it (pyarrow counts a quoted value spanning lines as one line)."""
        skipped, at, row = sorted(line for line, _ in self.invalid), 0, 0
        while True:
            row += 1
            line = row + self.header_lines + at
            while at < len(skipped) and skipped[at] <= line:
                at += 1
                line += 1
            yield line


def open_table(path: Path, fmt: str) -> Table:
    """The table in `path`; `fmt` is "hf" (a save_to_disk dir) or the file's suffix."""
    if fmt == ".parquet":
        return _parquet(path)
    if fmt in (".csv", ".tsv"):
        return _delimited(path, "\t" if fmt == ".tsv" else ",")
    return _hf(path, fmt)


def _parquet(path: Path) -> Table:
    try:
        meta = pq.ParquetFile(path)
    except Exception as err:
        raise TableError(f"cannot read parquet file {path}: {err}") from err
    names, rows = meta.schema_arrow.names, meta.metadata.num_rows
    meta.close()

    def read(columns: list[str], batch_rows: int) -> Iterator[dict[str, list]]:
        with pq.ParquetFile(path) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield batch.to_pydict()

    return Table(names, rows, read)


def _hf(path: Path, fmt: str) -> Table:
    import datasets  # heavy: only when a dataset is read

    try:
        ds = datasets.load_from_disk(str(path)) if fmt == "hf" else datasets.Dataset.from_file(str(path))
    except Exception as err:
        raise TableError(f"cannot load the HF dataset in {path}: {err}") from err
    ds = ds.with_format(None)

    def read(columns: list[str], batch_rows: int) -> Iterator[dict[str, list]]:
        yield from ds.select_columns(columns).iter(batch_size=batch_rows)

    return Table(list(ds.column_names), ds.num_rows, read)


def _delimited(path: Path, delimiter: str) -> Table:
    """CSV or TSV with a header line. Every column is read as bytes and decoded per value, so a line with invalid
    UTF-8 is one rejected row, not a failed file; lines with the wrong number of columns are set aside with their
    line number (pyarrow knows it when single-threaded)."""
    invalid: list[tuple[int, str]] = []

    def keep(row) -> str:
        invalid.append((row.number or 0, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'} line: expected "
                                         f"{row.expected_columns} columns, got {row.actual_columns}"))
        return "skip"

    def reader(column_types: dict | None = None) -> pv.CSVStreamingReader:
        return pv.open_csv(
            path, read_options=pv.ReadOptions(use_threads=False),
            parse_options=pv.ParseOptions(delimiter=delimiter, invalid_row_handler=keep, newlines_in_values=True),
            convert_options=pv.ConvertOptions(column_types=column_types or {}, strings_can_be_null=False),
        )

    try:
        names = reader().schema.names
        types = dict.fromkeys(names, pa.binary())
        invalid.clear()
        rows = sum(batch.num_rows for batch in reader(types))
    except (pa.ArrowInvalid, OSError) as err:
        raise TableError(f"cannot parse {path}: {err}") from err
    found = list(invalid)

    def read(columns: list[str], batch_rows: int) -> Iterator[dict[str, list]]:
        pending: dict[str, list] = {name: [] for name in columns}
        for batch in reader({name: pa.binary() for name in names}):
            for name in columns:
                pending[name] += [_text(v) for v in batch.column(name).to_pylist()]
            while len(pending[columns[0]]) >= batch_rows:
                yield {name: values[:batch_rows] for name, values in pending.items()}
                pending = {name: values[batch_rows:] for name, values in pending.items()}
        if columns and pending[columns[0]]:
            yield pending

    return Table(names, rows, read, found, header_lines=1)


def _text(value: bytes | None):
    """A CSV field as text, or its bytes when they are not valid UTF-8 (the reader rejects that row)."""
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value
