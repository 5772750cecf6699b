"""The `python -m spacy_mlre` command line: convert | evaluate | assets | results | benchmark | render.

Each command lives in its own module and registers itself on `app`.
"""
import typer

app = typer.Typer(
    name="spacy_mlre",
    help="Relation extraction for spaCy: data conversion, evaluation, benchmarks.",
    no_args_is_help=True,
    add_completion=False,
)


def _load_commands() -> None:
    import importlib

    for name in ("convert", "evaluate", "tune", "assets", "benchmark", "render", "results", "crosslingual"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:  # a command not written yet
            if err.name != f"{__name__}.{name}":
                raise


def main() -> None:
    _load_commands()
    app()
