"""`python -m spacy_mlre evaluate`: the relation scores plus the papers' metrics,
written as JSON, a Markdown table and PNG plots.

Unlike `spacy evaluate`, the input docs get the gold entities by default (the
relation extractor is evaluated on its own); `--predicted-ents` gives the
pipeline raw text so an upstream NER supplies them.
"""
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import typer
from spacy.training import Example
from tqdm import tqdm
from wasabi import msg

from ..relations import relation_keys
from . import app


def evaluate_pipeline(
    model: str,
    data: Union[str, Path],
    *,
    metrics: Optional[List[str]] = None,
    gold_ents: bool = True,
    batch_size: int = 64,
    gpu_id: int = -1,
    langs: Optional[List[str]] = None,
    labels: Optional[List[str]] = None,
    nlp: Optional[Any] = None,
    spans_key: Optional[str] = None,
) -> Dict[str, Any]:
    """Evaluate a pipeline on a DocBin (file, folder, glob, or several separated
    by commas) and return all scores. Wrong input (an unknown metric, a pipeline
    without a relation extractor, data without docs or gold relations) is a
    ValueError before anything is predicted. `nlp`: the pipeline `model`
    names, already loaded (to score several data sets with one load).
    `spans_key`: read the entities from this span group instead of the
    pipeline's own setting (data whose entities overlap, so doc.ents holds
    only some of them: Multi-CrossRE's translations keep all in "entities").
    `gold_ents`: the docs come with their gold entities and the components
    before the relation extractor that write entities (an NER) stay off, since
    spaCy's ner would add its own between them; else they find the entities."""
    import spacy
    from spacy.scorer import Scorer
    from thinc.api import require_gpu

    from ..corpus.reader import RelationCorpus
    from ..pipeline.relation_extractor import entity_setters, get_relation_extractor
    from ..scorer import score_relations

    chosen = resolve_metrics(metrics)
    if gpu_id >= 0 and nlp is None:
        require_gpu(gpu_id)
    nlp = nlp if nlp is not None else spacy.load(model)
    pipe = get_relation_extractor(nlp, where=f"The pipeline {model}")
    if spans_key is not None:
        pipe.cfg["spans_key"] = spans_key or None
    examples: List[Example] = list(RelationCorpus(data, gold_ents=gold_ents, langs=langs)(nlp))
    check_gold(examples, data, labels, pipe.labels)
    # gold entities: the components that would write entities stay off (and unscored)
    with nlp.select_pipes(disable=entity_setters(nlp, before=pipe.name) if gold_ents else []):
        start = time.perf_counter()
        docs = nlp.pipe((eg.predicted for eg in examples), batch_size=batch_size)
        for eg, doc in zip(examples, tqdm(docs, total=len(examples), desc="evaluate", unit=" docs", leave=False, disable=None)):
            eg.predicted = doc
        seconds = time.perf_counter() - start
        scores: Dict[str, Any] = Scorer(nlp=nlp).score(examples)
    scores.update(score_relations(examples, labels=labels))
    scores["words_per_second"] = sum(len(eg.predicted) for eg in examples) / max(seconds, 1e-9)
    for metric in chosen.values():
        # a metric that re-runs the model (bags) says so with `needs_nlp`
        scores.update(metric(examples, nlp=nlp) if getattr(metric, "needs_nlp", False) else metric(examples))
    if "joint" in chosen:
        from ..metrics.joint import router_probabilities

        router = router_probabilities(nlp)
        if router:
            scores["router_probabilities"] = router
    scores["n_docs"] = len(examples)
    scores["model"] = str(model)
    scores["gold_ents"] = gold_ents
    scores["spans_key"] = pipe.cfg["spans_key"]
    return scores


def resolve_metrics(names: Optional[List[str]]) -> Dict[str, Any]:
    """The metric functions of `names`, looked up before anything loads, so a
    typo stops at once with the valid names instead of after the prediction run."""
    from ..metrics import get_metric

    try:
        return {name: get_metric(name) for name in names or []}
    except ValueError as err:
        raise ValueError(
            f"{err} The relation scores (rel_micro_p/r/f, rel_macro_f, per label and per language) are "
            "always computed; --metrics adds the papers' metrics."
        ) from None


def check_gold(examples: List[Example], data: Union[str, Path], labels: Optional[List[str]], known: Sequence[str]) -> None:
    """Data without gold relations (or none of the labels asked for) would
    score 0.00 whatever the pipeline predicts: stop and say what is missing."""
    gold = Counter(key[4] for eg in examples for key in relation_keys(eg.reference))
    if not gold:
        raise ValueError(
            f"No gold relations in the {len(examples)} docs of {data}: every score would be 0.00. "
            "Evaluate on a split with its gold relations (as python -m spacy_mlre convert writes it), "
            "not on raw docs or on the pipeline's own predictions."
        )
    unknown = [label for label in labels or [] if label not in gold and label not in known]
    if unknown:
        raise ValueError(
            f"--labels {unknown}: neither the pipeline ({list(known)}) nor the gold relations of {data} "
            f"({sorted(gold)}) have these labels. Check their spelling."
        )
    if labels and not set(labels) & set(gold):
        raise ValueError(
            f"No gold relations of --labels {labels} in the {len(examples)} docs of {data}: every score "
            f"would be 0.00. Its gold relations have the labels {sorted(gold)}."
        )


def scores_markdown(scores: Dict[str, Any], title: str = "Relation extraction") -> str:
    """A Markdown summary: overall scores, then per label and per language."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
    for key in ("rel_micro_p", "rel_micro_r", "rel_micro_f", "rel_macro_f", "semeval_macro_f1"):
        if key in scores:
            lines.append(f"| {key} | {pct(scores[key])} |")
    bags = scores.get("bags")
    if bags:
        for key in ("auc", "p@100", "p@200", "p@300", "p@r0.1", "p@r0.2", "p@r0.3"):
            lines.append(f"| bag {key} | {pct(bags[key])} |")
        lines.append(f"| bags (multilingual) / facts | {bags['n_bags']} ({bags['n_multilingual_bags']}) / {bags['n_facts']} |")
    probe = scores.get("language_probe") or {}
    for key in ("chance", "discriminator_consistent", "probe_consistent", "probe_individual"):
        if key in probe:
            lines.append(f"| language {key.replace('_', ' ')} (accuracy) | {pct(probe[key])} |")
    lines.append(f"| docs | {scores.get('n_docs', '')} |")
    for section, key in (("label", "rel_f_per_label"), ("language", "rel_f_per_lang")):
        table = scores.get(key) or {}
        if table:
            lines += ["", f"| {section} | P | R | F |", "|---|---|---|---|"]
            lines += [f"| {name} | {pct(v['p'])} | {pct(v['r'])} | {pct(v['f'])} |" for name, v in table.items()]
    overlap = scores.get("overlap") or {}
    if overlap:
        # the kernel paper's Table 4: docs by overlap pattern and by number of triples
        lines += ["", "| docs (overlap) | docs | gold | P | R | F |", "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {v['docs']} | {v['gold']} | {pct(v['p'])} | {pct(v['r'])} | {pct(v['f'])} |"
                  for name, v in overlap.items()]
    if "joint_triple_f" in scores:
        lines += ["", "| joint (mERE) | P | R | F |", "|---|---|---|---|"]
        for view in ("triple", "pair", "relation", "head", "tail"):
            lines.append(f"| {view} | {pct(scores[f'joint_{view}_p'])} | {pct(scores[f'joint_{view}_r'])} | {pct(scores[f'joint_{view}_f'])} |")
    return "\n".join(lines) + "\n"


def plot_per_language(scores: Dict[str, Any], path: Path) -> Optional[Path]:
    """Bar chart of F1 per language (skipped when matplotlib is missing)."""
    from ..plots import pyplot

    plt = pyplot()
    if plt is None:
        return None
    per_lang = scores.get("rel_f_per_lang") or {}
    if not per_lang:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(per_lang)), 3))
    names = list(per_lang)
    ax.bar(names, [100 * per_lang[n]["f"] for n in names])
    ax.set_ylabel("micro F1")
    ax.set_title("Relation F1 per language")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@app.command("evaluate")
def evaluate_cli(
    model: str = typer.Argument(..., help="Pipeline name or directory"),
    data: str = typer.Argument(..., help="DocBin file or folder of .spacy files; several separated by commas"),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Write scores.json, scores.md and plots here"),
    metrics: str = typer.Option("", "--metrics", "-m", help="Extra metrics, comma-separated: semeval, overlap, joint, bags, language_probe"),
    predicted_ents: bool = typer.Option(False, "--predicted-ents", help="Give the pipeline raw text: entities come from an upstream NER"),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g"),
    langs: str = typer.Option("", "--langs", help="Only docs of these languages, comma-separated"),
    labels: str = typer.Option("", "--labels", help="Only score these relation labels, comma-separated"),
    spans_key: Optional[str] = typer.Option(None, "--spans-key", help="Read the entities from this span group instead of the pipeline's setting (overlapping entities, e.g. Multi-CrossRE: entities)"),
    each: bool = typer.Option(False, "--each", help="Score every data file on its own, into OUTPUT_DIR/<the file's folder name> (one pipeline load for many test sets, e.g. corpus/multi-crossre/*/test.spacy)"),
) -> None:
    """Evaluate a relation extraction pipeline."""
    from ..corpus.reader import expand_path

    split = lambda s: [x for x in s.split(",") if x] or None  # noqa: E731
    try:
        files = [match for path in split(str(data)) or [data] for match in expand_path(path)]
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="DATA")
    try:
        resolve_metrics(split(metrics))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="'--metrics'")
    jobs = [(data, output_dir)]
    if each:
        if output_dir is None:
            raise typer.BadParameter("--each writes one folder per data file: give --output-dir.", param_hint="'--each'")
        names = [f.parent.name for f in files]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise typer.BadParameter(f"--each names outputs by the data file's folder, and {', '.join(twice)} holds several of them.", param_hint="'--each'")
        jobs = [(str(f), output_dir / f.parent.name) for f in files]
    nlp = None
    for job_data, job_output in jobs:
        try:
            if nlp is None:
                import spacy

                if gpu_id >= 0:
                    from thinc.api import require_gpu

                    require_gpu(gpu_id)
                nlp = spacy.load(model)
            scores = evaluate_pipeline(
                model, job_data, metrics=split(metrics), gold_ents=not predicted_ents, batch_size=batch_size,
                langs=split(langs), labels=split(labels), nlp=nlp, spans_key=spans_key,
            )
        except (ValueError, OSError) as err:
            msg.fail(f"{job_data}: {err}" if each else str(err), exits=1)
        _write(scores, f"{model} on {job_data}", job_output)


def _write(scores: Dict[str, Any], title: str, output_dir: Optional[Path]) -> None:
    """Print the scores' table; write scores.json, scores.md and the plots to output_dir."""
    md = scores_markdown(scores, title=title)
    typer.echo(md)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False), encoding="utf8")
        (output_dir / "scores.md").write_text(md, encoding="utf8")
        plot_per_language(scores, output_dir / "f1_per_language.png")
        if "bags" in scores:
            from ..metrics.bags import plot_pr_curve

            plot_pr_curve(scores, output_dir / "pr_curve.png")
        if scores.get("router_probabilities"):
            from ..metrics.joint import plot_router_heatmap

            plot_router_heatmap(scores["router_probabilities"], output_dir / "router_heatmap.png")
        typer.echo(f"Wrote {output_dir}")
