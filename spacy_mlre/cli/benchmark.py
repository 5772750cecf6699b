"""`python -m spacy_mlre benchmark`: speed and memory of a pipeline, measured.

Inference mode runs `nlp.pipe` over a DocBin (gold entities on the input side)
and reports docs/s, words/s, candidate pairs/s, relations/s, peak memory and
the split between the encoder and the relation head. Training mode (`--train`)
times `nlp.update` (examples/s) for a config. Figures go to stdout and JSON;
nothing here asserts a speed.
"""
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from . import app


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports KiB


def machine_info() -> Dict[str, Any]:
    import spacy
    import thinc

    info: Dict[str, Any] = {
        "cores": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
        "thinc": thinc.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def _encoder_seconds(nlp, docs, batch_size: int, component: str) -> Optional[float]:
    """Time of the encoder alone: upstream components plus the pipe's own tok2vec."""
    from spacy.util import minibatch

    pipe = nlp.get_pipe(component)
    if not pipe.model.has_ref("tok2vec"):
        return None
    tok2vec = pipe.model.get_ref("tok2vec")
    upstream = [name for name in nlp.pipe_names if name != component]
    start = time.perf_counter()
    with nlp.select_pipes(enable=upstream):
        processed = list(nlp.pipe((d.copy() for d in docs), batch_size=batch_size))
    for batch in minibatch(processed, batch_size):
        tok2vec.predict(batch)
    return time.perf_counter() - start


def benchmark_inference(
    model: str,
    data: Path,
    *,
    batch_size: int = 64,
    n_process: int = 1,
    repeat: int = 3,
    component: str = "relation_extractor",
    limit: int = 0,
) -> Dict[str, Any]:
    import spacy

    from ..corpus.reader import RelationCorpus

    nlp = spacy.load(model)
    docs = [eg.predicted for eg in RelationCorpus(data, limit=limit)(nlp)]
    pipe = nlp.get_pipe(component)
    n_words = sum(len(d) for d in docs)
    n_pairs = pipe.get_candidates(docs).n_pairs
    runs: List[float] = []
    n_relations = 0
    for _ in range(repeat):
        inputs = [d.copy() for d in docs]
        start = time.perf_counter()
        out = list(nlp.pipe(inputs, batch_size=batch_size, n_process=n_process))
        runs.append(time.perf_counter() - start)
        n_relations = sum(len(d._.relations) for d in out)
    best = min(runs)
    encoder = _encoder_seconds(nlp, docs, batch_size, component) if n_process == 1 else None
    return {
        "mode": "inference",
        "model": str(model),
        "data": str(data),
        "batch_size": batch_size,
        "n_process": n_process,
        "repeat": repeat,
        "docs": len(docs),
        "words": n_words,
        "candidate_pairs": n_pairs,
        "relations": n_relations,
        "seconds": runs,
        "docs_per_second": len(docs) / best,
        "words_per_second": n_words / best,
        "pairs_per_second": n_pairs / best,
        "relations_per_second": n_relations / best,
        "encoder_seconds": encoder,
        "encoder_share": (encoder / best) if encoder is not None else None,
        "peak_memory_mb": _peak_rss_mb(),
        "machine": machine_info(),
    }


def benchmark_training(config: Path, data: Path, *, steps: int = 20, batch_size: int = 32) -> Dict[str, Any]:
    """Examples per second of `nlp.update` for a config on DocBin data."""
    from spacy.util import fix_random_seed, load_config, load_model_from_config, minibatch

    from ..corpus.reader import RelationCorpus

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
    return {
        "mode": "training",
        "config": str(config),
        "data": str(data),
        "steps": steps,
        "batch_size": batch_size,
        "examples": seen,
        "seconds": seconds,
        "examples_per_second": seen / seconds,
        "peak_memory_mb": _peak_rss_mb(),
        "machine": machine_info(),
    }


@app.command("benchmark")
def benchmark_cli(
    model: str = typer.Argument(..., help="Pipeline to run, or with --train a config file"),
    data: Path = typer.Argument(..., help="DocBin with entities set (file or folder)", exists=True),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    n_process: int = typer.Option(1, "--n-process", "-n"),
    repeat: int = typer.Option(3, "--repeat", "-r"),
    limit: int = typer.Option(0, "--limit", help="Only the first N docs (0: all)"),
    train: bool = typer.Option(False, "--train", help="Time training (examples/s) for the config MODEL"),
    steps: int = typer.Option(20, "--steps", help="Training mode: number of updates"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON"),
) -> None:
    """Measure speed and memory of a relation extraction pipeline."""
    if train:
        result = benchmark_training(Path(model), data, steps=steps, batch_size=batch_size)
    else:
        result = benchmark_inference(model, data, batch_size=batch_size, n_process=n_process, repeat=repeat, limit=limit)
    for key, value in result.items():
        if key != "machine":
            typer.echo(f"{key:>22}: {value:.1f}" if isinstance(value, float) else f"{key:>22}: {value}")
    typer.echo(f"{'machine':>22}: {json.dumps(result['machine'])}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2), encoding="utf8")
