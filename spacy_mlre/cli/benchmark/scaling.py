"""`benchmark scaling PIPELINE...`: docs with exactly N entities each
(synthetic words, or words from `--data`): time per doc, candidate pairs per
doc, the encoder/head split and pairs/s per N, for one or several pipelines
(earlier scaling JSON files merge in), as a Markdown table and a plot with one
line per pipeline."""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import typer

from ...plots import pyplot
from .._machine import machine_info
from ._common import (
    COMPONENT, Pipeline, architecture, benchmark_app, current_rss_mb, docbin_param, input_errors, load_pipeline,
    measure_pipe, model_name, peak_rss_mb, short_name, write_json,
)
from .synthetic import synthetic_docs, text_source

DEFAULT_COUNTS = (2, 4, 8, 16, 32, 64)


def _unique(name: str, hint: str, taken: Sequence[str]) -> str:
    """`name`, else `name (hint)`, else `name (hint) #k`: a label not in `taken`."""
    if name not in taken:
        return name
    name = f"{name} ({hint})" if hint else name
    k = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name} #{k}"
        k += 1
    return candidate


def _pipeline_name(nlp, model: Pipeline, component: str, taken: Sequence[str]) -> str:
    hint = Path(str(model)).name if isinstance(model, (str, Path)) else ""
    return _unique(short_name(architecture(nlp, component)), hint, taken)


def _point(n: int, batch: int, m: Dict[str, Any]) -> Dict[str, Any]:
    """One entity count's figures, per doc, from a `measure_pipe` result."""
    n_docs = max(m["docs"], 1)
    return {
        "entities_per_doc": n,
        "batch_size": batch,
        "docs": m["docs"],
        "words_per_doc": m["words"] / n_docs,
        "candidate_pairs": m["candidate_pairs"],
        "candidate_pairs_per_doc": m["candidate_pairs"] / n_docs,
        "all_pairs_per_doc": n * (n - 1),
        "relations_per_doc": m["relations"] / n_docs,
        "seconds": m["seconds"],
        "ms_per_doc": 1000.0 * m["best_seconds"] / n_docs,
        "docs_per_second": m["docs_per_second"],
        "words_per_second": m["words_per_second"],
        "pairs_per_second": m["pairs_per_second"],
        "encoder_ms_per_doc": 1000.0 * m["encoder_seconds"] / n_docs,
        "head_ms_per_doc": 1000.0 * m["head_seconds"] / n_docs,
        "encoder_share": m["encoder_share"],
        "head_share": m["head_share"],
        "rss_mb": current_rss_mb(),
        "peak_memory_mb": peak_rss_mb(),  # of the process so far (rises at the point that needs more)
    }


def benchmark_scaling(
    models: Sequence[Pipeline],
    entity_counts: Sequence[int] = DEFAULT_COUNTS,
    *,
    data: Optional[Path] = None,
    docs_per_point: int = 64,
    words_per_doc: int = 100,
    batch_size: int = 64,
    repeat: int = 3,
    max_batch_pairs: int = 0,
    component: str = COMPONENT,
    limit: int = 0,
    seed: int = 0,
) -> Dict[str, Any]:
    """Per pipeline and per N in `entity_counts`: `docs_per_point` docs of
    `words_per_doc` tokens with exactly N entities each, timed through
    `nlp.pipe` (one process, best of `repeat`), with the time per doc, the
    candidate pairs per doc (N * (N - 1) when all pairs are within the
    pipe's max_distance), pairs/s and the encoder/head split.

    max_batch_pairs: >0 sizes each point's batch by pairs instead of docs:
        as many docs as keep a batch within this many candidate pairs (at
        least one doc, at most `batch_size`). Models that encode every pair
        separately (entity markers) need this to keep memory bounded when
        entities grow; the batch used is reported per point."""
    pipelines: List[Dict[str, Any]] = []
    for model in models:
        nlp = load_pipeline(model, component)
        pipe = nlp.get_pipe(component)
        words, labels, lang = text_source(nlp, data, limit)
        make = lambda n, count: synthetic_docs(  # noqa: E731
            nlp, count, n, words_per_doc, words=words, labels=labels, lang=lang, spans_key=pipe.cfg.get("spans_key"), seed=seed
        )
        list(nlp.pipe(make(2, 4), batch_size=batch_size))  # warm-up
        points = []
        for n in entity_counts:
            docs = make(n, docs_per_point)
            per_doc = pipe.get_candidates(docs[:1]).n_pairs if docs else 0  # every doc has the same layout
            batch = batch_size
            if max_batch_pairs and per_doc:
                batch = max(1, min(batch_size, max_batch_pairs // per_doc))
            m = measure_pipe(nlp, docs, batch_size=batch, n_process=1, repeat=repeat, component=component)
            points.append(_point(n, batch, m))
        pipelines.append(
            {
                "name": _pipeline_name(nlp, model, component, [p["name"] for p in pipelines]),
                "model": model_name(model, nlp),
                "architecture": architecture(nlp, component),
                "max_distance": pipe.cfg.get("max_distance"),
                "points": points,
                "peak_memory_mb": peak_rss_mb(),
            }
        )
    return {
        "mode": "scaling",
        "data": str(data) if data is not None else None,
        "text": "corpus words" if data is not None else "synthetic lexicon",
        "docs_per_point": docs_per_point,
        "words_per_doc": words_per_doc,
        "batch_size": batch_size,
        "max_batch_pairs": max_batch_pairs,
        "repeat": repeat,
        "n_process": 1,
        "pipelines": pipelines,
        "machine": machine_info(),
    }


def merge_scaling(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One scaling result holding the pipelines of several (names kept unique)."""
    if not results:
        raise ValueError("Nothing to merge.")
    merged = dict(results[0])
    merged["pipelines"] = []
    for result in results:
        if result.get("mode") != "scaling":
            raise ValueError(f"Not a scaling result (mode {result.get('mode')!r}).")
        for p in result["pipelines"]:
            p = dict(p)
            p["name"] = _unique(p["name"], Path(str(p.get("model", ""))).name, [q["name"] for q in merged["pipelines"]])
            merged["pipelines"].append(p)
    return merged


def scaling_table(result: Dict[str, Any]) -> str:
    """Markdown: one row per pipeline and N."""
    lines = [
        "| pipeline | entities/doc | pairs/doc | batch | ms/doc | pairs/s | encoder ms/doc | head ms/doc | head share | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["pipelines"]:
        for pt in p["points"]:
            lines.append(
                f"| {p['name']} | {pt['entities_per_doc']} | {pt['candidate_pairs_per_doc']:.0f} | "
                f"{pt.get('batch_size', result.get('batch_size', '?'))} | {pt['ms_per_doc']:.2f} | "
                f"{pt['pairs_per_second']:,.0f} | {pt['encoder_ms_per_doc']:.2f} | {pt['head_ms_per_doc']:.2f} | "
                f"{100 * pt['head_share']:.0f}% | {pt.get('peak_memory_mb', 0):,.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot_scaling(result: Dict[str, Any], path: Path) -> Optional[Path]:
    """Time per doc and the relation head's share against entities per doc,
    one line per pipeline (log-log; N < 2, with no pairs, left out of the
    plot). None, and no file, without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (ax_time, ax_share) = plt.subplots(1, 2, figsize=(10, 3.8))
    ticks: set = set()
    for p in result["pipelines"]:
        points = [pt for pt in p["points"] if pt["entities_per_doc"] >= 2]
        xs = [pt["entities_per_doc"] for pt in points]
        ticks.update(xs)
        ax_time.plot(xs, [pt["ms_per_doc"] for pt in points], marker="o", label=p["name"])
        ax_share.plot(xs, [100 * pt["head_share"] for pt in points], marker="o", label=p["name"])
    for ax in (ax_time, ax_share):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([str(t) for t in sorted(ticks)])
        ax.set_xlabel("entities per doc")
        ax.grid(True, alpha=0.3)
    ax_time.set_yscale("log")
    ax_time.set_ylabel("ms per doc")
    ax_time.set_title("Time per doc")
    ax_share.set_ylabel("% of time in the relation head")
    ax_share.set_ylim(0, 100)
    ax_share.set_title("Relation head's share")
    ax_time.legend(fontsize=8)
    budget = f" (at most {result['max_batch_pairs']} pairs)" if result.get("max_batch_pairs") else ""
    fig.suptitle(
        f"{result['docs_per_point']} docs x {result['words_per_doc']} words per point, "
        f"batch {result['batch_size']}{budget}, 1 process, {result.get('machine', {}).get('cores', '?')} cores",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_counts(spec: str) -> List[int]:
    """--entities as a list: comma-separated non-negative integers, else a usage error."""
    try:
        counts = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 0:
        raise typer.BadParameter(f"takes comma-separated non-negative integers, got {spec!r}.", param_hint="'--entities'")
    return counts


def _split_sources(sources: Sequence[str]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """Earlier scaling results (the .json files, checked here so a typo is a
    usage error, not a failed spacy.load) and the pipelines to time (the rest)."""
    earlier, pipelines = [], []
    for source in sources:
        if not source.endswith(".json"):
            pipelines.append(source)
            continue
        path = Path(source)
        result = json.loads(path.read_text(encoding="utf8")) if path.is_file() else None
        if not isinstance(result, dict) or result.get("mode") != "scaling":
            what = "does not exist" if result is None else "is not a `benchmark scaling` result"
            raise typer.BadParameter(f"{source} {what}.", param_hint="'PIPELINE_OR_JSON'")
        earlier.append(result)
    return earlier, pipelines


@benchmark_app.command("scaling")
def scaling_cli(
    sources: List[str] = typer.Argument(
        ..., metavar="PIPELINE_OR_JSON",
        help="Pipelines to time, and earlier `benchmark scaling` JSON files to merge into the table and plot",
    ),
    entities: str = typer.Option(
        ",".join(map(str, DEFAULT_COUNTS)), "--entities", "-e", help="Entities per doc to time, comma-separated",
    ),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", callback=docbin_param,
        help="A DocBin (a .spacy file or a folder of them) whose words and entity labels fill the docs (default: a fixed lexicon, label ENT)",
    ),
    docs_per_point: int = typer.Option(64, "--docs-per-point", help="Docs per entity count"),
    words_per_doc: int = typer.Option(100, "--words-per-doc", help="Tokens per doc"),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    max_batch_pairs: int = typer.Option(0, "--max-batch-pairs", help="Size batches by candidate pairs, at most this many (0: by docs)"),
    repeat: int = typer.Option(3, "--repeat", "-r", help="Timed runs (the best is reported)"),
    limit: int = typer.Option(0, "--limit", help="Only the first N docs of DATA (0: all)"),
    component: str = typer.Option(COMPONENT, "--component", help="Name of the relation pipe"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON, and the table next to it (.md)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of time per doc and head share vs entities per doc (needs matplotlib)"),
) -> None:
    """Time per doc, pairs per doc and encoder/head split against the entities per doc."""
    counts = parse_counts(entities)
    earlier, pipelines = _split_sources(sources)
    results = earlier[:]
    if pipelines:
        with input_errors():
            results.append(
                benchmark_scaling(
                    pipelines, counts, data=data, docs_per_point=docs_per_point, words_per_doc=words_per_doc,
                    batch_size=batch_size, repeat=repeat, max_batch_pairs=max_batch_pairs, component=component, limit=limit,
                )
            )
    result = merge_scaling(results) if len(results) > 1 else results[0]
    table = scaling_table(result)
    typer.echo(table)
    if output is not None:
        output.with_suffix(".md").parent.mkdir(parents=True, exist_ok=True)
        output.with_suffix(".md").write_text(table, encoding="utf8")
    if plot is not None:
        typer.echo(f"plot: {plot_scaling(result, plot) or 'skipped (no matplotlib)'}")
    write_json(result, output)
