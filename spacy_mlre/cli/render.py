"""`python -m spacy_mlre render`: an HTML page of relation diagrams."""
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("render")
def render_cli(
    data: Path = typer.Argument(..., help="DocBin file or folder", exists=True),
    output: Path = typer.Argument(..., help="HTML file to write"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Predict with this pipeline (default: draw the gold relations)"),
    limit: int = typer.Option(20, "--limit", "-n", help="Number of docs"),
    langs: str = typer.Option("", "--langs", help="Only these languages, comma-separated"),
    spans_key: Optional[str] = typer.Option(
        None, "--spans-key",
        help="Also draw this span group's spans as entities (e.g. 'entities': the overlapping ones the converter keeps)",
    ),
) -> None:
    """Draw relations as labelled arcs between entities, one diagram per doc:
    each entity is one unit with its label under it (see spacy_mlre.visualize)."""
    import spacy

    from ..corpus.reader import RelationCorpus
    from ..visualize import render_relations

    nlp = spacy.load(model) if model else spacy.blank("xx")
    corpus = RelationCorpus(data, limit=limit, langs=[x for x in langs.split(",") if x] or None)
    examples = list(corpus(nlp))
    docs = list(nlp.pipe(eg.predicted for eg in examples)) if model else [eg.reference for eg in examples]
    output.write_text(render_relations(docs, spans_key=spans_key), encoding="utf8")
    typer.echo(f"Wrote {len(docs)} docs to {output}")
