"""`benchmark extract PIPELINE DATA`: words/s of `python -m spacy_mlre extract`
for several engines side by side in one run (default: one process, two
processes, a local Dask cluster of two workers), on the same input, with a
check that every run wrote the same bytes.

Words/s counts from the moment every worker has loaded the pipeline to the
last shard written (reading the input and writing the shards included);
the seconds to start the workers are reported apart, since they do not grow
with the corpus. `--text` feeds the docs' raw text instead (one doc per
line), so the pipeline's NER finds the entities. The load average before
and after goes with the figures: on a shared machine they mean little without it.
"""
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer
from wasabi import msg

from .._machine import machine_info
from ._common import COMPONENT, benchmark_app, write_json

DEFAULT_RUNS = "local:1,local:2,dask:2"


def parse_runs(runs: str) -> List[Tuple[str, int]]:
    """'local:1,local:2,dask:2' -> [("local", 1), ("local", 2), ("dask", 2)]."""
    out = []
    for part in filter(None, (p.strip() for p in runs.split(","))):
        engine, _, n = part.partition(":")
        if engine not in ("local", "dask") or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--runs: {part!r} is not ENGINE:N with ENGINE local or dask and N 1 or more.")
        out.append((engine, int(n)))
    if not out:
        raise ValueError("--runs names no run.")
    return out


def prepare_input(data: Path, folder: Path, *, text: bool, copies: int) -> Path:
    """The benchmark's INPUT: DATA itself, its docs' text (one doc per line),
    or a folder with DATA `copies` times (links, or text written again)."""
    from ...extract import find_inputs, read_records
    from ...extract.inputs import Item

    if text:
        lines = [r.text.replace("\n", " ").replace("\r", " ") for r in read_records(find_inputs(data)) if isinstance(r, Item)]
        path = folder / "input.txt"
        path.write_text("".join(line + "\n" for line in lines if line.strip()) * copies, encoding="utf8")
        return path
    if copies == 1:
        return data
    inputs = folder / "input"
    inputs.mkdir()
    for file in find_inputs(data):
        for i in range(copies):
            target = inputs / f"copy{i:03d}" / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file.path.resolve())
    return inputs


def benchmark_extract(
    model: str,
    data: Path,
    *,
    runs: str = DEFAULT_RUNS,
    text: bool = False,
    copies: int = 1,
    batch_size: int = 64,
    shard_size: int = 1000,
    component: Optional[str] = None,
) -> Dict[str, Any]:
    """Run `extract` once per engine on the same input; the figures of each run and whether all wrote the same bytes."""
    from ...extract import extract

    plan = parse_runs(runs)
    machine = machine_info()  # before a Dask LocalCluster sets OMP_NUM_THREADS=1 in this process
    load_before = os.getloadavg()
    results: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlre-bench-extract-") as tmp:
        folder = Path(tmp)
        input_path = prepare_input(data, folder, text=text, copies=copies)
        outputs = []
        for engine, n in plan:
            out = folder / f"out-{engine}-{n}"
            summary = extract(model, input_path, out, engine=engine, n_process=n, batch_size=batch_size,
                              shard_size=shard_size, component=component)
            outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("part-*"))})
            results.append({"engine": engine, "n_process": n, **summary.to_dict()})
            msg.info(f"{engine}:{n}: {summary.words_per_second:,.0f} words/s")
    base = results[0]["words_per_second"] or 1.0
    for result in results:
        result["speedup"] = result["words_per_second"] / base
    return {
        "mode": "extract",
        "model": str(model),
        "data": str(data),
        "input": "text" if text else "records",
        "copies": copies,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "runs": results,
        "identical": all(o == outputs[0] for o in outputs),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "machine": machine,
    }


def extract_table(result: Dict[str, Any]) -> str:
    lines = [
        "| run | workers | docs | words | relations | start s | extract s | words/s | vs first |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['engine']}:{r['n_process']} | {r['workers']} | {r['docs']:,} | {r['words']:,} | {r['relations']:,} | "
            f"{r['startup_seconds']:.1f} | {r['extract_seconds']:.2f} | {r['words_per_second']:,.0f} | {r['speedup']:.2f}x |"
        )
    load = lambda values: ", ".join(f"{v:.2f}" for v in values)  # noqa: E731
    lines.append("")
    lines.append(f"identical output: {result['identical']}; load average before {load(result['load_before'])}, "
                 f"after {load(result['load_after'])}")
    return "\n".join(lines)


@benchmark_app.command("extract")
def extract_cli(
    model: str = typer.Argument(..., metavar="PIPELINE", help="Pipeline name or directory"),
    data: Path = typer.Argument(..., metavar="DATA", exists=True, help="extract's INPUT: .txt / .jsonl / .spacy file or folder"),
    runs: str = typer.Option(DEFAULT_RUNS, "--runs", help="ENGINE:N runs, comma-separated"),
    text: bool = typer.Option(False, "--text", help="Feed the docs' raw text (the pipeline's NER finds the entities)"),
    copies: int = typer.Option(1, "--copies", help="Repeat DATA this many times (a longer run)"),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    shard_size: int = typer.Option(1000, "--shard-size"),
    component: str = typer.Option(COMPONENT, "--component", help="Name of the relation pipe"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON"),
) -> None:
    """Words/s of extract with each engine, side by side, on the same input."""
    from ...extract import ExtractError

    try:
        result = benchmark_extract(model, data, runs=runs, text=text, copies=copies, batch_size=batch_size,
                                   shard_size=shard_size, component=component)
    except (ExtractError, ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    typer.echo(extract_table(result))
    write_json(result, output)
