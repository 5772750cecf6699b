"""`benchmark memory PIPELINE`: resident memory sampled while streaming many
docs through `nlp.pipe` (it should stay flat after warm-up), and the peak
memory of one long doc with many entities, in a fresh process so that its
peak is its own."""
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy
import typer

from .._machine import machine_info
from ._common import (
    COMPONENT, Pipeline, architecture, benchmark_app, current_rss_mb, docbin_param, echo_result, input_errors,
    load_pipeline, model_name, peak_rss_mb, write_json,
)
from .synthetic import synthetic_docs, text_source


def _stream(nlp, n_docs: int, chunk: int, *, words, labels, lang, spans_key) -> Iterator[Any]:
    """`n_docs` docs made lazily, `chunk` at a time, with 0, 1, 2, 4, 8 or 16 entities (in turn per chunk)."""
    pattern = (0, 1, 2, 4, 8, 16)
    made = 0
    for i in range(0, n_docs, chunk):
        count = min(chunk, n_docs - made)
        n = pattern[(i // chunk) % len(pattern)]
        yield from synthetic_docs(nlp, count, n, 40, words=words, labels=labels, lang=lang, spans_key=spans_key, seed=i)
        made += count


def stream_check(
    nlp, n_docs: int = 10000, *, sample_every: int = 0, batch_size: int = 64, component: str = COMPONENT,
    words=None, labels=None, lang=None,
) -> Dict[str, Any]:
    """Resident memory sampled every `sample_every` docs (default: 20 samples)
    while `n_docs` docs, made on the fly, stream through `nlp.pipe`."""
    pipe = nlp.get_pipe(component)
    every = sample_every or max(1, n_docs // 20)
    docs = _stream(nlp, n_docs, batch_size, words=words, labels=labels, lang=lang, spans_key=pipe.cfg.get("spans_key"))
    samples: List[Dict[str, float]] = []
    relations = 0
    rss_start = current_rss_mb()
    start = time.perf_counter()
    count = 0
    for count, doc in enumerate(nlp.pipe(docs, batch_size=batch_size), 1):
        relations += len(doc._.relations)
        if count % every == 0 or count == n_docs:
            samples.append({"docs": count, "rss_mb": current_rss_mb(), "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    # after warm-up (a tenth of the docs, at least one round of entity counts), resident memory should stay flat
    warm = min(max(n_docs // 10, 6 * batch_size), n_docs // 2)
    settled = [s for s in samples if s["docs"] >= warm] or samples
    rss = [s["rss_mb"] for s in settled] or [rss_start]
    slope = 0.0
    if len(settled) >= 3:
        slope = float(numpy.polyfit([s["docs"] for s in settled], rss, 1)[0]) * 1000.0
    return {
        "docs": count,
        "relations": relations,
        "seconds": seconds,
        "docs_per_second": count / seconds if seconds else 0.0,
        "sample_every": every,
        "rss_before_mb": rss_start,
        "warmup_docs": warm,
        "rss_after_warmup_mb": rss[0],
        "rss_last_mb": rss[-1],
        "rss_max_mb": max(s["rss_mb"] for s in samples) if samples else rss_start,
        "rss_growth_after_warmup_mb": rss[-1] - rss[0],
        "rss_slope_mb_per_1000_docs": slope,
        "samples": samples,
    }


def _long_doc(nlp, tokens: int, entities: int, component: str) -> Dict[str, Any]:
    pipe = nlp.get_pipe(component)
    rss_loaded = current_rss_mb()
    doc = synthetic_docs(nlp, 1, entities, tokens, spans_key=pipe.cfg.get("spans_key"))[0]
    pairs = pipe.get_candidates([doc]).n_pairs
    start = time.perf_counter()
    out = list(nlp.pipe([doc]))[0]
    return {
        "tokens": len(doc),
        "entities": entities,
        "max_distance": pipe.cfg.get("max_distance"),
        "candidate_pairs": pairs,
        "all_pairs": entities * (entities - 1),
        "relations": len(out._.relations),
        "seconds": time.perf_counter() - start,
        "rss_loaded_mb": rss_loaded,
        "peak_memory_mb": peak_rss_mb(),
    }


def _long_doc_main() -> None:
    """Entry of the long-doc child process: JSON arguments in, JSON result out (last line)."""
    args = json.loads(sys.argv[1])
    result = _long_doc(load_pipeline(args["model"]), args["tokens"], args["entities"], args["component"])
    result["in_subprocess"] = True
    print(json.dumps(result))


def long_doc_check(model: Pipeline, tokens: int = 10000, entities: int = 300, *, component: str = COMPONENT) -> Dict[str, Any]:
    """One doc of `tokens` tokens with `entities` entities (candidate pairs
    bounded by the pipe's max_distance) through the pipeline. A path or
    package name runs in a fresh process, so `peak_memory_mb` is that
    process's own peak (model loaded, the doc done); a loaded pipeline runs
    here and reports this process's peak."""
    if not isinstance(model, (str, Path)):
        return {**_long_doc(model, tokens, entities, component), "in_subprocess": False}
    args = json.dumps({"model": str(model), "tokens": tokens, "entities": entities, "component": component})
    code = f"from {__name__} import _long_doc_main; _long_doc_main()"
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"The long-doc check failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark_memory(
    model: Pipeline,
    *,
    data: Optional[Path] = None,
    stream_docs: int = 10000,
    sample_every: int = 0,
    long_doc_tokens: int = 10000,
    long_doc_entities: int = 300,
    batch_size: int = 64,
    component: str = COMPONENT,
    limit: int = 0,
) -> Dict[str, Any]:
    """The streaming check (flat resident memory over `stream_docs` docs) and
    the long-doc check (`long_doc_tokens` tokens, `long_doc_entities` entities)."""
    nlp = load_pipeline(model, component)
    words, labels, lang = text_source(nlp, data, limit)
    stream = stream_check(nlp, stream_docs, sample_every=sample_every, batch_size=batch_size, component=component,
                          words=words, labels=labels, lang=lang)
    long_doc = long_doc_check(model, long_doc_tokens, long_doc_entities, component=component) if long_doc_tokens else None
    return {
        "mode": "memory",
        "model": model_name(model, nlp),
        "architecture": architecture(nlp, component),
        "data": str(data) if data is not None else None,
        "batch_size": batch_size,
        "stream": stream,
        "long_doc": long_doc,
        "peak_memory_mb": peak_rss_mb(),
        "machine": machine_info(),
    }


def parse_long_doc(spec: str) -> Tuple[int, int]:
    """--long-doc as (tokens, entities): TOKENS,ENTITIES, or 0 to skip; else a usage error."""
    tokens, _, entities = spec.partition(",")
    try:
        parsed = (int(tokens), int(entities or 0))
    except ValueError:
        parsed = (-1, -1)
    if min(parsed) < 0:
        raise typer.BadParameter(f"takes TOKENS,ENTITIES or 0, got {spec!r}.", param_hint="'--long-doc'")
    return parsed


@benchmark_app.command("memory")
def memory_cli(
    model: str = typer.Argument(..., metavar="PIPELINE", help="Pipeline name or directory"),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", callback=docbin_param,
        help="A DocBin (a .spacy file or a folder of them) whose words and entity labels fill the streamed docs (default: a fixed lexicon, label ENT)",
    ),
    stream_docs: int = typer.Option(10000, "--stream-docs", help="Docs to stream (0 to skip)"),
    long_doc: str = typer.Option("10000,300", "--long-doc", help="TOKENS,ENTITIES of the long doc (0 to skip)"),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    limit: int = typer.Option(0, "--limit", help="Only the first N docs of DATA (0: all)"),
    component: str = typer.Option(COMPONENT, "--component", help="Name of the relation pipe"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON"),
) -> None:
    """Resident memory while streaming docs through nlp.pipe, and the peak for one long doc."""
    tokens, entities = parse_long_doc(long_doc)
    with input_errors():
        result = benchmark_memory(
            model, data=data, stream_docs=stream_docs, long_doc_tokens=tokens, long_doc_entities=entities,
            batch_size=batch_size, component=component, limit=limit,
        )
    samples = result["stream"]["samples"]
    typer.echo("stream rss_mb: " + " ".join(f"{s['docs']}:{s['rss_mb']:.0f}" for s in samples))
    echo_result(result)
    write_json(result, output)
