"""Shard files: `part-NNNNN.jsonl` (one JSON object per relation) or
`part-NNNNN.parquet` (the same columns), each written under a temporary
name and renamed when complete, so a crash leaves no half-written shard and
`--resume` can trust every `part-*` file it finds.

Only the driver writes, from the rows the workers return, so the bytes do
not depend on the engine or the number of processes; workers on a cluster
need no access to the output folder.
"""
import os
from pathlib import Path
from typing import Any, List, Sequence

from .worker import COLUMNS, Row

FORMATS = ("jsonl", "parquet")
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"


def shard_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{fmt}"


def check_format(fmt: str) -> None:
    """An unknown format or a missing pyarrow stops before any work."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown output format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(
                "--format parquet needs pyarrow: pip install 'spacy-mlre[parquet]' (or pip install pyarrow)."
            ) from None


def write_shard(folder: Path, index: int, rows: Sequence[Any], fmt: str) -> Path:
    """Write a shard atomically: a hidden temporary file, renamed into place.
    `rows`: JSON lines for jsonl, row tuples for parquet."""
    final = folder / shard_name(index, fmt)
    partial = folder / f"{PARTIAL_PREFIX}{final.name}{PARTIAL_SUFFIX}"
    try:
        (_write_parquet if fmt == "parquet" else _write_jsonl)(partial, rows)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def _write_jsonl(path: Path, lines: Sequence[str]) -> None:
    """`lines`: rows the workers encoded already (`worker.jsonl_line`)."""
    with path.open("w", encoding="utf8", newline="\n") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())


def parquet_schema():
    import pyarrow as pa

    text, offset = pa.string(), pa.int64()
    types = [text, text, text, text, offset, offset, text, text, offset, offset, text, pa.float64()]
    return pa.schema(list(zip(COLUMNS, types)))


def _write_parquet(path: Path, rows: Sequence[Row]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
    table = pa.Table.from_arrays([pa.array(list(col), type=t) for col, t in zip(columns, parquet_schema().types)],
                                 schema=parquet_schema())
    pq.write_table(table, path)


def finished_shards(folder: Path, fmt: str) -> List[int]:
    """Indices of the shards already written (what --resume skips)."""
    out = []
    for path in folder.glob(f"part-*.{fmt}"):
        number = path.name[len("part-"):-len(fmt) - 1]
        if number.isdigit():
            out.append(int(number))
    return sorted(out)


def remove_partials(folder: Path) -> None:
    """Temporary files of a run that was killed mid-write."""
    for path in folder.glob(f"{PARTIAL_PREFIX}part-*{PARTIAL_SUFFIX}"):
        path.unlink(missing_ok=True)
