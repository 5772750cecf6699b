"""`python -m spacy_mlre tune`: per-label decision thresholds chosen on dev data.

Relations are rare among candidate pairs, so a global 0.5 threshold usually
trades recall away; each label's threshold is set to maximise its F1 on the
given (dev) docs (`--objective micro`: the micro F1 of all labels together),
and the pipeline is saved with them. A label without gold
relations in the dev docs keeps its threshold: there is nothing to choose by.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import typer
from wasabi import msg

from . import app


def tune_pipeline(
    model: str,
    data: Union[str, Path],
    component: str = "relation_extractor",
    spans_key: Optional[str] = None,
    grid: Optional[Sequence[float]] = None,
    objective: str = "label",
) -> Tuple[Any, Dict[str, float]]:
    """The loaded pipeline with the thresholds of `component` tuned on `data`,
    and the thresholds chosen (only labels with gold relations in `data`).
    `spans_key`: read the entities from this span group ("": doc.ents) instead
    of the pipeline's setting, and keep it in the returned pipeline (a model
    trained on overlapping gold entities that will read an NER's doc.ents).
    `grid`: the thresholds to choose from (default 0.05, 0.10, ..., 0.95).
    `objective`: "label" (each label's own F1, so the macro F1) or "micro"
    (the micro F1 of all labels; RelationExtractor.tune_thresholds).
    Wrong input (no such component, no docs, no gold relations) is a ValueError."""
    import spacy

    from ..corpus.reader import RelationCorpus
    from ..pipeline.relation_extractor import TUNE_OBJECTIVES, entity_setters, get_relation_extractor, set_spans_key

    if objective not in TUNE_OBJECTIVES:  # before loading: a typo should not cost a model load
        raise ValueError(f"--objective must be one of {', '.join(TUNE_OBJECTIVES)}, got {objective!r}.")
    nlp = spacy.load(model)
    pipe = get_relation_extractor(nlp, component, where=f"The pipeline {model}")
    if spans_key is not None:
        set_spans_key(nlp, component, spans_key or None)
    examples = list(RelationCorpus(data)(nlp))
    # run the upstream components, so the pipe sees what it sees at inference,
    # on the gold entities (an NER would add its own between them)
    skip = {component, *entity_setters(nlp)}
    upstream = [name for name in nlp.pipe_names if name not in skip]
    with nlp.select_pipes(enable=upstream):
        for eg, doc in zip(examples, nlp.pipe(eg.predicted for eg in examples)):
            eg.predicted = doc
    return nlp, pipe.tune_thresholds(examples, grid=grid, objective=objective)


@app.command("tune")
def tune_cli(
    model: str = typer.Argument(..., help="Pipeline name or directory"),
    data: Path = typer.Argument(..., help="Dev DocBin file or folder", exists=True),
    output: Path = typer.Argument(..., help="Where to save the pipeline with tuned thresholds"),
    component: str = typer.Option("relation_extractor", "--component", "-c"),
    grid: str = typer.Option("", "--grid", help="Comma-separated thresholds to choose from, each above 0 and below 1 (default 0.05, 0.10, ..., 0.95); lower ones raise recall and macro F"),
    objective: str = typer.Option("label", "--objective", help="What the thresholds maximise on the dev data: 'label' (each label's own F1, so the macro F1) or 'micro' (the micro F1 of all labels)"),
    spans_key: Optional[str] = typer.Option(None, "--spans-key", help="Read the entities from this span group (\"\": doc.ents) instead of the pipeline's setting, and save the pipeline so (e.g. trained on Multi-CrossRE's overlapping entities, used after an NER)"),
) -> None:
    """Tune per-label thresholds of a relation_extractor on dev data."""
    try:
        nlp, chosen = tune_pipeline(model, data, component, spans_key, parse_grid(grid) if grid else None, objective)
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)
    pipe = nlp.get_pipe(component)
    nlp.to_disk(output)
    for label in pipe.labels:
        threshold = pipe.cfg["thresholds"].get(label, pipe.cfg["threshold"])
        kept = "" if label in chosen else "\t(kept: no gold relation in the dev data)"
        shown = f"{threshold:.2f}" if round(threshold, 2) == threshold else f"{threshold:g}"  # 0.50, 0.005
        typer.echo(f"{label}\t{shown}{kept}")
    kept = [label for label in pipe.labels if label not in chosen]
    if kept:
        msg.warn(f"{len(kept)} of {len(pipe.labels)} labels have no gold relation in {data} and keep their "
                 f"threshold: {', '.join(kept)}. Tune them on dev data that has them.")
    typer.echo(f"Saved to {output}")


def parse_grid(text: str) -> List[float]:
    """The thresholds of `--grid` ("0.01,0.02,0.05"); a ValueError naming the bad entry."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--grid: {part.strip()!r} is not a number; give thresholds such as 0.01,0.05,0.1.") from None
        if not 0.0 < value < 1.0:
            raise ValueError(f"--grid: {value} is not a threshold between 0 and 1 (exclusive).")
        values.append(value)
    return sorted(set(values))
