"""`benchmark speed PIPELINE DATA`: throughput of `nlp.pipe` over a DocBin
(gold entities on the input side): docs/s, words/s, candidate pairs/s,
relations/s, peak memory and the split of the time between the encoder and
the relation head; with `--profile`, a cProfile of one batch."""
from pathlib import Path
from typing import Any, Dict, Optional

import typer

from .._machine import machine_info
from ._common import (
    COMPONENT, DATA_HELP, Pipeline, architecture, benchmark_app, docbin_param, echo_result, input_errors, load_docs,
    load_pipeline, measure_pipe, model_name, peak_rss_mb, write_json,
)
from .profiling import profile_pipe, save_profile


def benchmark_inference(
    model: Pipeline,
    data: Path,
    *,
    batch_size: int = 64,
    n_process: int = 1,
    repeat: int = 3,
    component: str = COMPONENT,
    limit: int = 0,
    profile_path: Optional[Path] = None,
    top: int = 25,
) -> Dict[str, Any]:
    """Throughput of `nlp.pipe` over DATA (best of `repeat` runs, `n_process`
    processes); the encoder/head split comes from one extra one-process pass.
    With `profile_path`, also a cProfile of the first batch (see `profile_pipe`)."""
    nlp = load_pipeline(model, component)
    docs = load_docs(nlp, data, limit)
    measured = measure_pipe(nlp, docs, batch_size=batch_size, n_process=n_process, repeat=repeat, component=component)
    peak = peak_rss_mb()  # before profiling
    profile = None
    if profile_path is not None:
        profile = save_profile(profile_pipe(nlp, docs[:batch_size], component=component, top=top), profile_path)
    return {
        "mode": "inference",
        "model": model_name(model, nlp),
        "architecture": architecture(nlp, component),
        "data": str(data),
        "batch_size": batch_size,
        "n_process": n_process,
        "repeat": repeat,
        **measured,
        "peak_memory_mb": peak,
        "profile": profile,
        "machine": machine_info(),
    }


@benchmark_app.command("speed")
def speed_cli(
    model: str = typer.Argument(..., metavar="PIPELINE", help="Pipeline name or directory"),
    data: Path = typer.Argument(..., metavar="DATA", help=DATA_HELP, callback=docbin_param),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Processes for nlp.pipe"),
    repeat: int = typer.Option(3, "--repeat", "-r", help="Timed runs (the best is reported)"),
    limit: int = typer.Option(0, "--limit", help="Only the first N docs of DATA (0: all)"),
    component: str = typer.Option(COMPONENT, "--component", help="Name of the relation pipe"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="cProfile one batch; text report here, raw stats next to it (.prof)"),
    top: int = typer.Option(25, "--top", help="Profile: functions to list"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON"),
) -> None:
    """Docs, words, pairs and relations per second of nlp.pipe over DATA, with the encoder/head split."""
    with input_errors():
        result = benchmark_inference(
            model, data, batch_size=batch_size, n_process=n_process, repeat=repeat, component=component, limit=limit,
            profile_path=profile, top=top,
        )
    echo_result(result)
    write_json(result, output)
