"""`benchmark train CONFIG DATA`: examples per second of `nlp.update` for a
training config; with `--profile`, a cProfile of one update."""
import time
from pathlib import Path
from typing import Any, Dict, Optional

import typer

from .._machine import machine_info
from ._common import DATA_HELP, benchmark_app, docbin_param, echo_result, peak_rss_mb, write_json
from .profiling import profile_update, save_profile


def benchmark_training(
    config: Path,
    data: Path,
    *,
    steps: int = 20,
    batch_size: int = 32,
    profile_path: Optional[Path] = None,
    top: int = 25,
) -> Dict[str, Any]:
    """Examples per second of `nlp.update` for a config on DocBin data; with
    `profile_path`, also a cProfile of one update (see `profile_update`)."""
    from spacy.util import fix_random_seed, load_config, load_model_from_config, minibatch

    from ...corpus.reader import RelationCorpus

    fix_random_seed(0)
    cfg = load_config(config, overrides={"paths.train": str(data), "paths.dev": str(data)})
    nlp = load_model_from_config(cfg, auto_fill=True, validate=True)
    examples = list(RelationCorpus(data)(nlp))
    optimizer = nlp.initialize(lambda: examples)
    batches = list(minibatch(examples, batch_size))
    seen = 0
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        nlp.update(batch, sgd=optimizer)
        seen += len(batch)
    seconds = time.perf_counter() - start
    profile = None
    if profile_path is not None:
        profile = save_profile(profile_update(nlp, batches[0], optimizer, top=top), profile_path)
    return {
        "mode": "training",
        "config": str(config),
        "data": str(data),
        "steps": steps,
        "batch_size": batch_size,
        "examples": seen,
        "seconds": seconds,
        "examples_per_second": seen / seconds,
        "peak_memory_mb": peak_rss_mb(),
        "profile": profile,
        "machine": machine_info(),
    }


@benchmark_app.command("train")
def train_cli(
    config: Path = typer.Argument(..., metavar="CONFIG", exists=True, dir_okay=False, help="Training config (.cfg)"),
    data: Path = typer.Argument(..., metavar="DATA", help=f"{DATA_HELP}, to train on", callback=docbin_param),
    steps: int = typer.Option(20, "--steps", help="Number of updates"),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="cProfile one update; text report here, raw stats next to it (.prof)"),
    top: int = typer.Option(25, "--top", help="Profile: functions to list"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON"),
) -> None:
    """Examples per second of nlp.update for a training config on DATA."""
    result = benchmark_training(config, data, steps=steps, batch_size=batch_size, profile_path=profile, top=top)
    echo_result(result)
    write_json(result, output)
