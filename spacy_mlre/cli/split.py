"""`python -m spacy_mlre split INPUT OUTPUT_DIR --dev N`: hold out a dev set.

SemEval-2010 Task 8 ships train and test only, but per-label thresholds
(`tune`) and spaCy's model selection need dev docs that are not test docs.
This draws N docs of a training DocBin (a seeded shuffle, so a rerun gives
the same split) into OUTPUT_DIR/dev.spacy and writes the rest, in their
original order, to OUTPUT_DIR/train.spacy. Docs keep their user data
(relations, language, doc id).
"""
import random
from pathlib import Path
from typing import List, Tuple

import typer
from wasabi import msg

from . import app


def split_docbin(input_path: Path, output_dir: Path, n_dev: int, seed: int = 0) -> Tuple[int, int]:
    """Write OUTPUT_DIR/train.spacy and OUTPUT_DIR/dev.spacy from INPUT; return
    their doc counts. A dev size that leaves no training doc is a ValueError,
    raised before anything is written."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    try:
        docs = list(DocBin().from_disk(input_path).get_docs(Vocab()))
    except ValueError as err:
        raise ValueError(f"{input_path}: {err}") from None
    if not 0 < n_dev < len(docs):
        raise ValueError(
            f"--dev {n_dev}: {input_path} has {len(docs)} docs; the dev set needs at least one "
            f"and must leave at least one for training."
        )
    dev_ids = set(random.Random(seed).sample(range(len(docs)), n_dev))
    parts: Tuple[List, List] = ([], [])
    for i, doc in enumerate(docs):
        parts[i in dev_ids].append(doc)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, part in zip(("train", "dev"), parts):
        DocBin(store_user_data=True, docs=part).to_disk(output_dir / f"{name}.spacy")
    return len(parts[0]), len(parts[1])


@app.command("split")
def split_cli(
    input_path: Path = typer.Argument(..., metavar="INPUT", exists=True, dir_okay=False, help="Training DocBin (.spacy)"),
    output_dir: Path = typer.Argument(..., metavar="OUTPUT_DIR", help="Folder for train.spacy and dev.spacy"),
    n_dev: int = typer.Option(..., "--dev", help="Number of docs to hold out as dev"),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle that picks the dev docs"),
) -> None:
    """Hold out a dev set from a training DocBin (for data with no dev split, e.g. SemEval-2010)."""
    if output_dir.resolve() == input_path.resolve().parent and input_path.name in ("train.spacy", "dev.spacy"):
        msg.fail(f"{input_path} would be overwritten: choose another OUTPUT_DIR.", exits=1)
    try:
        n_train, n_dev_written = split_docbin(input_path, output_dir, n_dev, seed)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    msg.good(f"{output_dir}/train.spacy: {n_train} docs, {output_dir}/dev.spacy: {n_dev_written} docs (seed {seed})")
