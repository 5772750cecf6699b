"""The `python -m spacy_mlre` command line: convert | evaluate | tune | extract | assets | results | benchmark | render | crosslingual | split.

Each command lives in its own module and registers itself on `app` when
`main()` imports it, not on `import spacy_mlre.cli`, so that importing one
helper (e.g. `cli.results`) does not import every command.
"""
import typer

app = typer.Typer(
    name="spacy_mlre",
    help="Relation extraction for spaCy: data conversion, evaluation, benchmarks.",
    no_args_is_help=True,
    add_completion=False,
)


def _load_commands() -> None:
    """Register every command on `app`."""
    from . import assets, benchmark, convert, crosslingual, encoder, evaluate, extract, render, results, split, tune  # noqa: F401


def main() -> None:
    _load_commands()
    app()
