"""`python -m spacy_mlre extract PIPELINE INPUT OUTPUT`: a corpus in, a relation table out."""
from pathlib import Path
from typing import Optional

import typer
from tqdm import tqdm
from wasabi import msg

from . import app

HELP = """Extract relations from a corpus into a folder of shards.

INPUT: text files (.txt, one doc per line), JSON lines (.jsonl, the project's
format: 'text', optional 'entities', 'id', 'lang'), DocBins (.spacy), or a
folder or glob of them. Entities come from the record when it has them, else
from the pipeline's NER. OUTPUT: part-NNNNN.jsonl (or .parquet), one row per
relation: doc_id, lang, head_text, head_label, head_start, head_end, the same
for the tail, label, score; character offsets, rows in input order. Each shard
is written whole or not at all; --resume skips the shards a stopped run
finished. A malformed record is skipped and counted with its file:line
(--strict stops instead). --engine dask runs on a Dask cluster: --scheduler
tcp://HOST:8786, or a local one of --n-process workers.
"""


@app.command("extract", help=HELP)
def extract_cli(
    pipeline: str = typer.Argument(..., metavar="PIPELINE", help="Pipeline name or directory"),
    input_path: str = typer.Argument(..., metavar="INPUT", help="File, folder or glob of .txt / .jsonl / .spacy files"),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="Folder for the shards"),
    engine: str = typer.Option("local", "--engine", "-e", help="local or dask"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Worker processes (local), or workers of a local Dask cluster"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Docs per nlp.pipe batch and per task"),
    shard_size: int = typer.Option(1000, "--shard-size", help="Input records per output shard"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786"),
    resume: bool = typer.Option(False, "--resume", help="Continue a stopped run: skip the shards it finished"),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or parquet (needs pyarrow)"),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first malformed record instead of skipping it"),
    component: Optional[str] = typer.Option(None, "--component", help="Name of the relation pipe (default: the first)"),
) -> None:
    from ..extract import ExtractError, extract

    bar = tqdm(unit=" docs", desc="extract", disable=None, leave=False)
    found = 0

    def progress(docs: int, relations: int) -> None:
        nonlocal found
        found += relations
        bar.update(docs)
        bar.set_postfix(relations=found, refresh=False)

    def set_total(n: int) -> None:
        bar.total = n
        bar.refresh()

    try:
        summary = extract(
            pipeline, input_path, output, engine=engine, n_process=n_process, batch_size=batch_size,
            shard_size=shard_size, scheduler=scheduler, resume=resume, fmt=fmt, strict=strict, component=component,
            progress=progress, n_records=set_total,
        )
    except (ExtractError, OSError) as err:
        bar.close()
        msg.fail(str(err), exits=1)
    bar.close()
    resumed = f", {summary.shards_resumed} already done" if summary.shards_resumed else ""
    msg.good(
        f"{_n(summary.docs, 'doc')} ({_n(summary.words, 'word')}), {_n(summary.relations, 'relation')} -> {output} "
        f"({summary.shards_written} of {_n(summary.shards, 'shard')} written{resumed})"
    )
    msg.info(
        f"{summary.seconds:.1f} s ({summary.startup_seconds:.1f} s loading the pipeline on "
        f"{_n(summary.workers, 'worker')}), {summary.words_per_second:,.0f} words/s"
    )
    n_skipped = sum(summary.skipped.values())
    if n_skipped:
        msg.warn(f"Skipped {_n(n_skipped, 'malformed record')}:")
        for kind, n in summary.skipped.items():
            typer.echo(f"  {n:>6}  {kind}")
        for example in summary.skipped_examples:
            typer.echo(f"  {example}")
        if n_skipped > len(summary.skipped_examples):
            typer.echo(f"  ... ({n_skipped - len(summary.skipped_examples)} more)")


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
