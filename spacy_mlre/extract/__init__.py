"""`extract`: a corpus in, a table of relations out, in shards, on one machine
(`engine="local"`, N processes) or on a Dask cluster (`engine="dask"`).

inputs (reading text / JSONL / DocBin records), worker (pipeline loaded once
per worker, records in, rows out), writers (atomic shard files), engines
(in-process, process pool, Dask), run (the driver: shards, resume, summary).
"""
from .engines import ENGINES, make_engine
from .inputs import ExtractError, Item, Skip, find_inputs, read_records
from .run import MANIFEST, Summary, extract
from .worker import COLUMNS, ChunkResult, Spec, extract_chunk
from .writers import FORMATS, shard_name

__all__ = [
    "COLUMNS", "ChunkResult", "ENGINES", "ExtractError", "FORMATS", "Item", "MANIFEST", "Skip", "Spec", "Summary",
    "extract", "extract_chunk", "find_inputs", "make_engine", "read_records", "shard_name",
]
