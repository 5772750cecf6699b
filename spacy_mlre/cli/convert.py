"""`python -m spacy_mlre convert FORMAT INPUT OUTPUT_DIR`: datasets to DocBins."""
import time
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional

import typer
from wasabi import msg

from . import app
from ..corpus import FORMATS, get_converter
from ..corpus.converter import ConversionError, OutputNotWritable, check_output, convert
from ..corpus.sources import find_sources, language_from_name
from ..corpus.stats import SplitStats, write_summary
from ..corpus.text import shared_vocab

Format = Enum("Format", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]

HELP = """Convert a relation-extraction dataset to spaCy DocBins, one per split.

INPUT is a data file or a folder of a dataset's split files. Output:
OUTPUT_DIR/<split>.spacy (train / dev / test, read from the file names; val
is dev; a name without a split keeps its stem, e.g. RELX_de.spacy). A folder
whose sub-folders hold the data (Multi-CrossRE translation/<language>/,
CasRel data/<dataset>/) gives OUTPUT_DIR/<sub-folder>/<split>.spacy, the
sub-folder named by its language code when it names a language (german -> de,
BR_portuguese -> pt-BR). CrossRE's domain files of one split are merged.

Docs carry gold entities (all in doc.spans["entities"], the non-overlapping
ones in doc.ents), gold relations (doc._.relations, with bag keys where the
data gives them), the language (doc._.lang) and the source id (doc._.doc_id).
A summary per split is printed and written to OUTPUT_DIR/summary.json.
A malformed record stops the run with file, line and reason; --skip-invalid
skips and counts it. Rules per format: docs/data-formats.md.
"""


if app.registered_callback is None:
    # Typer runs a lone command as the whole program ("convert" would be read as
    # FORMAT); a callback keeps `python -m spacy_mlre convert ...` a subcommand
    # while convert is the only command written.
    @app.callback()
    def _subcommands() -> None:
        """Relation extraction for spaCy: data conversion, evaluation, benchmarks."""


@app.command("convert", help=HELP)
def convert_cli(
    data_format: Format = typer.Argument(..., metavar="FORMAT", help="Source format."),
    input_path: Path = typer.Argument(..., metavar="INPUT", exists=True, help="Data file or folder."),
    output_dir: Path = typer.Argument(..., metavar="OUTPUT_DIR", help="Folder for the .spacy files."),
    lang: Optional[str] = typer.Option(
        None, "--lang", "-l",
        help="Language code of the records when the data does not give one per record "
        "(default: from the folder or file name, else the format's own: en for the English datasets).",
    ),
    split: Optional[str] = typer.Option(None, "--split", help="Output split name for every input file."),
    domains: Optional[str] = typer.Option(
        None, "--domains", help="CrossRE only: comma-separated domains to keep (ai,literature,music,news,politics,science)."
    ),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip and count malformed records instead of stopping."),
) -> None:
    conv = get_converter(data_format.value)
    options = {"domains": [d.strip() for d in domains.split(",") if d.strip()]} if domains else {}
    try:
        sources = find_sources(conv, input_path, lang, split, options)
        check_output(output_dir, sources, extra_files=["summary.json"])
    except (FileNotFoundError, ValueError, OutputNotWritable) as err:
        msg.fail(str(err), exits=1)
    started = time.perf_counter()

    def report(group: str, stats: Dict[str, SplitStats]) -> None:
        for split_name, st in stats.items():
            print_stats(st, f"{group}/{split_name}" if group else split_name)

    try:
        results = convert(conv, sources, output_dir, shared_vocab(), skip_invalid, on_group_done=report)
    except ConversionError as err:
        hint = "" if skip_invalid or not err.skippable else " (use --skip-invalid to skip and count such records)"
        msg.fail(f"{err}{hint}", exits=1)
    except OutputNotWritable as err:
        msg.fail(str(err), exits=1)
    if len(results) > 1 and all(language_from_name(group) for group in results):
        for split_name, total in totals(results).items():
            print_stats(total, f"total/{split_name} ({len(results)} groups)")
    write_summary(results, output_dir / "summary.json")
    n_docs = sum(st.docs for splits in results.values() for st in splits.values())
    msg.good(f"Wrote {n_docs} docs to {output_dir} in {time.perf_counter() - started:.1f}s")


def totals(results: Dict[str, Dict[str, SplitStats]]) -> Dict[str, SplitStats]:
    """Per split, summed over groups (e.g. all Multi-CrossRE languages)."""
    out: Dict[str, SplitStats] = {}
    for splits in results.values():
        for split_name, st in splits.items():
            out.setdefault(split_name, SplitStats()).merge(st)
    return out


def print_stats(st: SplitStats, title: str) -> None:
    """The summary of one split: what was kept, per label and language, and
    every kind of dropped, repaired or skipped item with its count."""
    msg.divider(title)
    n_rels = sum(st.relations.values())
    print(f"docs: {st.docs}   entities: {st.entities} "
          f"(not in doc.ents because they overlap a longer one: {st.entities_not_in_ents})")
    print(f"relations read: {st.relations_read}   stored: {n_rels}   "
          f"no-relation pairs: {sum(st.no_relation.values())}")
    rows: List[tuple] = [(label, n) for label, n in sorted(st.relations.items())]
    rows += [(f"{label} (no relation stored)", n) for label, n in sorted(st.no_relation.items())]
    if rows:
        msg.table(rows, header=("label", "count"), divider=True, aligns=("l", "r"))
    lang_rows = [(lg, n, st.relations_per_lang[lg]) for lg, n in sorted(st.docs_per_lang.items())]
    if lang_rows:
        msg.table(lang_rows, header=("lang", "docs", "relations"), divider=True, aligns=("l", "r", "r"))
    for what, counter in (("dropped", st.dropped), ("repaired", st.repaired), ("skipped (invalid)", st.skipped)):
        for kind, n in sorted(counter.items()):
            print(f"{what}: {kind}: {n}")
    for where in st.skipped_where[:5]:
        print(f"  e.g. {where}")
