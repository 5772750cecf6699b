"""`python -m spacy_mlre tune`: per-label decision thresholds chosen on dev data.

Relations are rare among candidate pairs, so a global 0.5 threshold usually
trades recall away; each label's threshold is set to maximise its F1 on the
given (dev) docs, and the pipeline is saved with them.
"""
from pathlib import Path

import typer

from . import app


@app.command("tune")
def tune_cli(
    model: str = typer.Argument(..., help="Pipeline name or directory"),
    data: Path = typer.Argument(..., help="Dev DocBin file or folder", exists=True),
    output: Path = typer.Argument(..., help="Where to save the pipeline with tuned thresholds"),
    component: str = typer.Option("relation_extractor", "--component", "-c"),
) -> None:
    """Tune per-label thresholds of a relation_extractor on dev data."""
    import spacy

    from ..corpus.reader import RelationCorpus

    nlp = spacy.load(model)
    pipe = nlp.get_pipe(component)
    examples = list(RelationCorpus(data)(nlp))
    # run the upstream components, so the pipe sees what it sees at inference
    upstream = [name for name in nlp.pipe_names if name != component]
    with nlp.select_pipes(enable=upstream):
        for eg, doc in zip(examples, nlp.pipe(eg.predicted for eg in examples)):
            eg.predicted = doc
    chosen = pipe.tune_thresholds(examples)
    nlp.to_disk(output)
    for label, threshold in chosen.items():
        typer.echo(f"{label}\t{threshold:.2f}")
    typer.echo(f"Saved to {output}")
