"""What the benchmark sub-commands share: the `benchmark` typer app, loading a
pipeline and its input docs, memory readings, the timed `nlp.pipe` pass with
its encoder/head split, and the command-line helpers."""
import json
import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import typer
from wasabi import msg

from .. import app

benchmark_app = typer.Typer(
    help="Measure the speed and memory of relation extraction pipelines.",
    no_args_is_help=True,
)
app.add_typer(benchmark_app, name="benchmark")

Pipeline = Union[str, Path, Any]  # a path or package name, or a loaded Language
COMPONENT = "relation_extractor"
DATA_HELP = "A DocBin with entities set: a .spacy file or a folder of them"


# Loading -------------------------------------------------------------------


def load_pipeline(model: Pipeline, component: Optional[str] = None):
    """`model` itself when it is a loaded Language, else `spacy.load(model)`;
    with `component`, checked to have that relation extractor, so that a
    pipeline without one stops here, not with a KeyError mid-benchmark."""
    import spacy
    from spacy.language import Language

    from ...pipeline.relation_extractor import get_relation_extractor

    nlp = model if isinstance(model, Language) else spacy.load(model)
    if component is not None:
        get_relation_extractor(nlp, component, where=f"The pipeline {model_name(model, nlp)}")
    return nlp


@contextmanager
def input_errors() -> Iterator[None]:
    """Wrong input to a sub-command (a pipeline without the relation pipe, an
    empty DocBin, weights that do not fit) ends it with the message and exit
    code 1, as spaCy's commands do, not with a traceback."""
    try:
        yield
    except (ValueError, OSError) as err:
        msg.fail(str(err), exits=1)


def model_name(model: Pipeline, nlp) -> str:
    """How a result names its pipeline: the path or package name it was loaded from, else its meta name."""
    return str(model) if isinstance(model, (str, Path)) else nlp.meta.get("name", "?")


def architecture(nlp, component: str) -> str:
    """The registered architecture of the relation pipe's model ("?" if the config has none)."""
    try:
        return str(nlp.config["components"][component]["model"]["@architectures"])
    except KeyError:
        return "?"


def short_name(architecture: str) -> str:
    """spacy_mlre.PairClassifier.v1 -> PairClassifier."""
    parts = architecture.split(".")
    return parts[1] if len(parts) == 3 else architecture


def load_docs(nlp, data: Path, limit: int = 0) -> List[Any]:
    """The input side of a DocBin: tokens, gold entities, sentence starts, no relations."""
    from ...corpus.reader import RelationCorpus

    return [eg.predicted for eg in RelationCorpus(data, limit=limit)(nlp)]


# Memory --------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process or its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports KiB


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


# The time split ------------------------------------------------------------


def _encoder_node(pipe):
    """The pipe model's encoder: the `tok2vec` (own or listener) or `encoder`
    (marker models) ref of the outermost node that has one. The whole tree is
    searched because a chain does not carry its layers' refs (e.g.
    chain(pair_features(tok2vec, ...), scorer))."""
    for node in pipe.model.walk():  # breadth first: the outermost node first
        for ref in ("tok2vec", "encoder"):
            if node.has_ref(ref):
                return node.get_ref(ref)
    return None


class _Stopwatch:
    """Adds up the seconds spent in one thinc node's forward while active."""

    def __init__(self, node) -> None:
        self.node = node
        self.seconds = 0.0

    def __enter__(self) -> "_Stopwatch":
        if self.node is not None:
            forward = self._forward = self.node._func

            def timed(model, X, is_train):
                start = time.perf_counter()
                try:
                    return forward(model, X, is_train)
                finally:
                    self.seconds += time.perf_counter() - start

            self.node._func = timed
        return self

    def __exit__(self, *exc) -> None:
        if self.node is not None:
            self.node._func = self._forward


def clear_caches(nlp) -> int:
    """Empty the per-doc caches of the pipeline's models (FrozenEncoder.v1
    keeps each doc's vectors): a timed pass over docs an earlier pass saw
    would measure cache lookups, not the encoder. Returns how many were cleared."""
    n = 0
    for _, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                cache = getattr(shim, "cache", None)
                if cache is not None and hasattr(cache, "clear"):
                    cache.clear()
                    n += 1
    return n


def time_split(nlp, docs: Sequence[Any], batch_size: int, component: str = COMPONENT) -> Dict[str, Any]:
    """Where the time goes, from one pass over copies of `docs` batch by batch
    and component by component: the encoder (components before the relation
    pipe, e.g. a shared tok2vec or transformer, plus the pipe model's own
    encoder node) and the relation head (the rest of the pipe: candidates,
    pair features, scoring, decoding). Shares are of this pass's total."""
    from spacy.util import minibatch

    pipe = nlp.get_pipe(component)
    names = nlp.pipe_names
    before = set(names[: names.index(component)])
    upstream = in_pipe = downstream = 0.0
    clear_caches(nlp)
    with _Stopwatch(_encoder_node(pipe)) as watch:
        for batch in minibatch([d.copy() for d in docs], batch_size):
            for name, proc in nlp.pipeline:
                start = time.perf_counter()
                if name == component:
                    proc.set_annotations(batch, proc.predict(batch))
                elif hasattr(proc, "pipe"):
                    batch = list(proc.pipe(batch, batch_size=batch_size))
                else:
                    batch = [proc(doc) for doc in batch]
                elapsed = time.perf_counter() - start
                if name == component:
                    in_pipe += elapsed
                elif name in before:
                    upstream += elapsed
                else:
                    downstream += elapsed
    encoder = upstream + watch.seconds
    head = max(in_pipe - watch.seconds, 0.0)
    total = upstream + in_pipe + downstream
    return {
        "encoder_seconds": encoder,
        "head_seconds": head,
        "other_seconds": downstream,
        "split_seconds": total,
        "encoder_share": encoder / total if total else 0.0,
        "head_share": head / total if total else 0.0,
    }


def measure_pipe(nlp, docs: Sequence[Any], *, batch_size: int, n_process: int, repeat: int, component: str) -> Dict[str, Any]:
    """Best-of-`repeat` wall time of `nlp.pipe` over copies of `docs`, the counts, and the split."""
    pipe = nlp.get_pipe(component)
    n_words = sum(len(d) for d in docs)
    n_pairs = pipe.get_candidates(docs).n_pairs if docs else 0
    runs: List[float] = []
    n_relations = 0
    for _ in range(max(1, repeat)):
        inputs = [d.copy() for d in docs]
        clear_caches(nlp)
        start = time.perf_counter()
        out = list(nlp.pipe(inputs, batch_size=batch_size, n_process=n_process))
        runs.append(time.perf_counter() - start)
        n_relations = sum(len(d._.relations) for d in out)
    best = max(min(runs), 1e-9)
    split = time_split(nlp, docs, batch_size, component)
    return {
        "docs": len(docs),
        "words": n_words,
        "candidate_pairs": n_pairs,
        "relations": n_relations,
        "seconds": runs,
        "best_seconds": best,
        "docs_per_second": len(docs) / best,
        "words_per_second": n_words / best,
        "pairs_per_second": n_pairs / best,
        "relations_per_second": n_relations / best,
        **split,
    }


# Command line --------------------------------------------------------------


def is_docbin(path: Path) -> bool:
    """A .spacy file or a folder of them (a pipeline folder, with its config.cfg, is not)."""
    if path.is_file():
        return path.suffix == ".spacy"
    if path.is_dir():
        return not (path / "config.cfg").exists() and next(path.rglob("*.spacy"), None) is not None
    return False


def docbin_param(path: Optional[Path]) -> Optional[Path]:
    """Typer callback for DATA: a usage error that says what DATA must be, before anything loads."""
    if path is not None and not is_docbin(path):
        what = "does not exist" if not path.exists() else "is not a .spacy file or a folder of them"
        raise typer.BadParameter(f"{path} {what}.")
    return path


def echo_result(result: Dict[str, Any]) -> None:
    """The figures as `key: value` lines, then the machine and the profile report if any."""
    _echo_flat(result)
    typer.echo(f"{'machine':>22}: {json.dumps(result['machine'])}")
    if result.get("profile"):
        typer.echo(result["profile"]["text"])


def _echo_flat(result: Dict[str, Any]) -> None:
    for key, value in result.items():
        if key.strip() in ("machine", "profile", "samples"):
            continue
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            _echo_flat({f"  {k}": v for k, v in value.items()})
        elif isinstance(value, float):
            typer.echo(f"{key:>22}: {value:.3f}" if value < 10 else f"{key:>22}: {value:.1f}")
        elif isinstance(value, list) and value and isinstance(value[0], float):
            typer.echo(f"{key:>22}: [{', '.join(f'{v:.3f}' for v in value)}]")
        else:
            typer.echo(f"{key:>22}: {value}")


def write_json(result: Dict[str, Any], path: Optional[Path]) -> None:
    """The whole result as JSON at `path` (nothing when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2), encoding="utf8")
