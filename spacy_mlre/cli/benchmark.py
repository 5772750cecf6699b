"""`python -m spacy_mlre benchmark`: speed and memory of a pipeline, measured.

Modes (nothing here asserts a speed; figures go to stdout and JSON):

- inference (default): `nlp.pipe` over a DocBin (gold entities on the input
  side): docs/s, words/s, candidate pairs/s, relations/s, peak memory and the
  split of the time between the encoder and the relation head.
- `--train`: `nlp.update` (examples/s) for a config.
- `--scaling 2,4,8,...`: docs with exactly N entities each (synthetic words,
  or words from DATA): time per doc, candidate pairs per doc, the
  encoder/head split and pairs/s per N, for one or several pipelines, with a
  plot (one line per pipeline).
- `--memory`: resident memory sampled while streaming many docs through
  `nlp.pipe`, and the peak memory of one long doc with many entities (in a
  fresh process, so its peak is its own).
- `--profile FILE` (with inference or `--train`): cProfile of one batch, the
  top functions by cumulative time, and every Python function called at least
  once per candidate pair or per token (a per-pair or per-token loop shows
  up there).
"""
import cProfile
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import typer

from . import app

Pipeline = Union[str, Path, Any]  # a path or package name, or a loaded Language
COMPONENT = "relation_extractor"

# Words of the synthetic docs: a fixed list, so streaming never grows the string store.
LEXICON = (
    "the of and to in a is was for on as with by that it from at his an were are which this be has "
    "also first had its new their one after two been other more they but when into during all she "
    "between some over most can many time there only under year city world group team state about "
    "while where both then three work later known used called part film series number well system "
    "because however since several until former against early music including through each based "
    "became following second national research model data method results paper language network"
).split()

def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0  # Linux reports KiB


def machine_info() -> Dict[str, Any]:
    import spacy
    import thinc

    info: Dict[str, Any] = {
        "cores": os.cpu_count(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
        "thinc": thinc.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info



def _current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except (OSError, ValueError, IndexError):
        return _peak_rss_mb()


def _load(model: Pipeline):
    import spacy
    from spacy.language import Language

    return model if isinstance(model, Language) else spacy.load(model)


def _architecture(nlp, component: str) -> str:
    try:
        return str(nlp.config["components"][component]["model"]["@architectures"])
    except KeyError:
        return "?"


def _short_name(architecture: str) -> str:
    """spacy_mlre.PairClassifier.v1 -> PairClassifier."""
    parts = architecture.split(".")
    return parts[1] if len(parts) == 3 else architecture


def load_docs(nlp, data: Path, limit: int = 0) -> List[Any]:
    """The input side of a DocBin: tokens, gold entities, sentence starts, no relations."""
    from ..corpus.reader import RelationCorpus

    return [eg.predicted for eg in RelationCorpus(data, limit=limit)(nlp)]


# The time split ------------------------------------------------------------


def _encoder_node(pipe):
    """The pipe model's encoder: its `tok2vec` (own or listener) or `encoder` (marker models)."""
    for ref in ("tok2vec", "encoder"):
        if pipe.model.has_ref(ref):
            return pipe.model.get_ref(ref)
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


def _measure(nlp, docs: Sequence[Any], *, batch_size: int, n_process: int, repeat: int, component: str) -> Dict[str, Any]:
    """Best-of-`repeat` wall time of `nlp.pipe` over copies of `docs`, the counts, and the split."""
    pipe = nlp.get_pipe(component)
    n_words = sum(len(d) for d in docs)
    n_pairs = pipe.get_candidates(docs).n_pairs if docs else 0
    runs: List[float] = []
    n_relations = 0
    for _ in range(max(1, repeat)):
        inputs = [d.copy() for d in docs]
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


# Inference -----------------------------------------------------------------


def benchmark_inference(
    model: Pipeline,
    data: Path,
    *,
    batch_size: int = 64,
    n_process: int = 1,
    repeat: int = 3,
    component: str = COMPONENT,
    limit: int = 0,
    profile_path: Optional[Path] = None,
    top: int = 25,
) -> Dict[str, Any]:
    """Throughput of `nlp.pipe` over DATA (best of `repeat` runs, `n_process`
    processes); the encoder/head split comes from one extra one-process pass.
    With `profile_path`, also a cProfile of the first batch (see `profile_pipe`)."""
    nlp = _load(model)
    docs = load_docs(nlp, data, limit)
    measured = _measure(nlp, docs, batch_size=batch_size, n_process=n_process, repeat=repeat, component=component)
    peak = _peak_rss_mb()  # before profiling
    profile = None
    if profile_path is not None:
        report = profile_pipe(nlp, docs[:batch_size], component=component, top=top)
        save_profile(report, profile_path)
        profile = {"path": str(profile_path), **_public(report)}
    return {
        "mode": "inference",
        "model": str(model) if isinstance(model, (str, Path)) else nlp.meta.get("name", "?"),
        "architecture": _architecture(nlp, component),
        "data": str(data),
        "batch_size": batch_size,
        "n_process": n_process,
        "repeat": repeat,
        **measured,
        "peak_memory_mb": peak,
        "profile": profile,
        "machine": machine_info(),
    }


# Scaling -------------------------------------------------------------------


def entity_layout(length: int, n_entities: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Token starts and ends of `n_entities` entities spread evenly over
    `length` tokens: two tokens each where there is room (3 tokens per
    entity), else one; never overlapping."""
    if n_entities == 0:
        return numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64")
    if n_entities > length:
        raise ValueError(f"{n_entities} entities do not fit in {length} tokens.")
    starts = (numpy.arange(n_entities, dtype="int64") * length) // n_entities
    size = 2 if length >= 3 * n_entities else 1
    return starts, starts + size


def text_source(nlp, data: Optional[Path], limit: int = 0) -> Tuple[Optional[List[str]], Optional[List[str]], Optional[str]]:
    """Words (in corpus order), entity labels (one per entity, so cycling them
    keeps the corpus' label frequencies) and the commonest language of DATA."""
    if data is None:
        return None, None, None
    from ..language import LANG_KEY

    words: List[str] = []
    labels: List[str] = []
    langs: Counter = Counter()
    for doc in load_docs(nlp, data, limit):
        words.extend(t.text for t in doc)
        labels.extend(e.label_ for e in doc.ents)
        if LANG_KEY in doc.user_data:
            langs[doc.user_data[LANG_KEY]] += 1
    return words or None, labels or None, (langs.most_common(1)[0][0] if langs else None)


def synthetic_docs(
    nlp,
    n_docs: int,
    n_entities: int,
    words_per_doc: int = 100,
    *,
    words: Optional[Sequence[str]] = None,
    labels: Optional[Sequence[str]] = None,
    lang: Optional[str] = None,
    spans_key: Optional[str] = None,
    seed: int = 0,
) -> List[Any]:
    """`n_docs` docs of max(words_per_doc, n_entities) tokens with exactly
    `n_entities` entities each (laid out by `entity_layout`, so every doc has
    the same candidate pairs). Words are windows of `words` (e.g. a corpus'
    text) or draws from a fixed lexicon; entity labels cycle through `labels`
    ("ENT" by default). Entities go to `doc.ents` and, with `spans_key`, to
    that span group too."""
    from spacy.tokens import Doc, Span

    from ..language import LANG_KEY

    rng = numpy.random.default_rng(seed)
    length = max(words_per_doc, n_entities, 1)
    starts, ends = entity_layout(length, n_entities)
    labels = list(labels) if labels else ["ENT"]
    docs = []
    for i in range(n_docs):
        if words:
            offset = int(rng.integers(0, max(1, len(words) - length)))
            toks = [words[(offset + j) % len(words)] for j in range(length)]
        else:
            toks = [LEXICON[j] for j in rng.integers(0, len(LEXICON), length)]
        doc = Doc(nlp.vocab, words=toks)
        ents = [Span(doc, int(s), int(e), label=labels[(i * n_entities + k) % len(labels)]) for k, (s, e) in enumerate(zip(starts, ends))]
        doc.ents = ents
        if spans_key:
            doc.spans[spans_key] = ents
        if lang:
            doc.user_data[LANG_KEY] = lang
        docs.append(doc)
    return docs


def _unique(name: str, hint: str, taken: Sequence[str]) -> str:
    """`name`, else `name (hint)`, else `name (hint) #k`: a label not in `taken`."""
    if name not in taken:
        return name
    name = f"{name} ({hint})" if hint else name
    k = 2
    candidate = name
    while candidate in taken:
        candidate = f"{name} #{k}"
        k += 1
    return candidate


def _pipeline_name(nlp, model: Pipeline, component: str, taken: Sequence[str]) -> str:
    hint = Path(str(model)).name if isinstance(model, (str, Path)) else ""
    return _unique(_short_name(_architecture(nlp, component)), hint, taken)


def benchmark_scaling(
    models: Sequence[Pipeline],
    entity_counts: Sequence[int] = (2, 4, 8, 16, 32, 64),
    *,
    data: Optional[Path] = None,
    docs_per_point: int = 64,
    words_per_doc: int = 100,
    batch_size: int = 64,
    repeat: int = 3,
    max_batch_pairs: int = 0,
    component: str = COMPONENT,
    limit: int = 0,
    seed: int = 0,
) -> Dict[str, Any]:
    """Per pipeline and per N in `entity_counts`: `docs_per_point` docs of
    `words_per_doc` tokens with exactly N entities each, timed through
    `nlp.pipe` (one process, best of `repeat`), with the time per doc, the
    candidate pairs per doc (N * (N - 1) when all pairs are within the
    pipe's max_distance), pairs/s and the encoder/head split.

    max_batch_pairs: >0 sizes each point's batch by pairs instead of docs:
        as many docs as keep a batch within this many candidate pairs (at
        least one doc, at most `batch_size`). Models that encode every pair
        separately (entity markers) need this to keep memory bounded when
        entities grow; the batch used is reported per point."""
    pipelines: List[Dict[str, Any]] = []
    for model in models:
        nlp = _load(model)
        pipe = nlp.get_pipe(component)
        words, labels, lang = text_source(nlp, data, limit)
        make = lambda n, count: synthetic_docs(  # noqa: E731
            nlp, count, n, words_per_doc, words=words, labels=labels, lang=lang, spans_key=pipe.cfg.get("spans_key"), seed=seed
        )
        list(nlp.pipe(make(2, 4), batch_size=batch_size))  # warm-up
        points = []
        for n in entity_counts:
            docs = make(n, docs_per_point)
            per_doc = pipe.get_candidates(docs[:1]).n_pairs if docs else 0  # every doc has the same layout
            batch = batch_size
            if max_batch_pairs and per_doc:
                batch = max(1, min(batch_size, max_batch_pairs // per_doc))
            m = _measure(nlp, docs, batch_size=batch, n_process=1, repeat=repeat, component=component)
            n_docs = max(m["docs"], 1)
            points.append(
                {
                    "entities_per_doc": n,
                    "batch_size": batch,
                    "docs": m["docs"],
                    "words_per_doc": m["words"] / n_docs,
                    "candidate_pairs": m["candidate_pairs"],
                    "candidate_pairs_per_doc": m["candidate_pairs"] / n_docs,
                    "all_pairs_per_doc": n * (n - 1),
                    "relations_per_doc": m["relations"] / n_docs,
                    "seconds": m["seconds"],
                    "ms_per_doc": 1000.0 * m["best_seconds"] / n_docs,
                    "docs_per_second": m["docs_per_second"],
                    "words_per_second": m["words_per_second"],
                    "pairs_per_second": m["pairs_per_second"],
                    "encoder_ms_per_doc": 1000.0 * m["encoder_seconds"] / n_docs,
                    "head_ms_per_doc": 1000.0 * m["head_seconds"] / n_docs,
                    "encoder_share": m["encoder_share"],
                    "head_share": m["head_share"],
                    "rss_mb": _current_rss_mb(),
                    "peak_memory_mb": _peak_rss_mb(),  # of the process so far (rises at the point that needs more)
                }
            )
        pipelines.append(
            {
                "name": _pipeline_name(nlp, model, component, [p["name"] for p in pipelines]),
                "model": str(model) if isinstance(model, (str, Path)) else nlp.meta.get("name", "?"),
                "architecture": _architecture(nlp, component),
                "max_distance": pipe.cfg.get("max_distance"),
                "points": points,
                "peak_memory_mb": _peak_rss_mb(),
            }
        )
    return {
        "mode": "scaling",
        "data": str(data) if data is not None else None,
        "text": "corpus words" if data is not None else "synthetic lexicon",
        "docs_per_point": docs_per_point,
        "words_per_doc": words_per_doc,
        "batch_size": batch_size,
        "max_batch_pairs": max_batch_pairs,
        "repeat": repeat,
        "n_process": 1,
        "pipelines": pipelines,
        "machine": machine_info(),
    }


def merge_scaling(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One scaling result holding the pipelines of several (names kept unique)."""
    if not results:
        raise ValueError("Nothing to merge.")
    merged = dict(results[0])
    merged["pipelines"] = []
    for result in results:
        if result.get("mode") != "scaling":
            raise ValueError(f"Not a scaling result (mode {result.get('mode')!r}).")
        for p in result["pipelines"]:
            p = dict(p)
            p["name"] = _unique(p["name"], Path(str(p.get("model", ""))).name, [q["name"] for q in merged["pipelines"]])
            merged["pipelines"].append(p)
    return merged


def scaling_table(result: Dict[str, Any]) -> str:
    """Markdown: one row per pipeline and N."""
    lines = [
        "| pipeline | entities/doc | pairs/doc | batch | ms/doc | pairs/s | encoder ms/doc | head ms/doc | head share | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["pipelines"]:
        for pt in p["points"]:
            lines.append(
                f"| {p['name']} | {pt['entities_per_doc']} | {pt['candidate_pairs_per_doc']:.0f} | "
                f"{pt.get('batch_size', result.get('batch_size', '?'))} | {pt['ms_per_doc']:.2f} | "
                f"{pt['pairs_per_second']:,.0f} | {pt['encoder_ms_per_doc']:.2f} | {pt['head_ms_per_doc']:.2f} | "
                f"{100 * pt['head_share']:.0f}% | {pt.get('peak_memory_mb', 0):,.0f} |"
            )
    return "\n".join(lines) + "\n"


def plot_scaling(result: Dict[str, Any], path: Path) -> Optional[Path]:
    """Time per doc and the relation head's share against entities per doc,
    one line per pipeline (log-log; N < 2, with no pairs, left out of the plot). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax_time, ax_share) = plt.subplots(1, 2, figsize=(10, 3.8))
    ticks: set = set()
    for p in result["pipelines"]:
        points = [pt for pt in p["points"] if pt["entities_per_doc"] >= 2]
        xs = [pt["entities_per_doc"] for pt in points]
        ticks.update(xs)
        ax_time.plot(xs, [pt["ms_per_doc"] for pt in points], marker="o", label=p["name"])
        ax_share.plot(xs, [100 * pt["head_share"] for pt in points], marker="o", label=p["name"])
    for ax in (ax_time, ax_share):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([str(t) for t in sorted(ticks)])
        ax.set_xlabel("entities per doc")
        ax.grid(True, alpha=0.3)
    ax_time.set_yscale("log")
    ax_time.set_ylabel("ms per doc")
    ax_time.set_title("Time per doc")
    ax_share.set_ylabel("% of time in the relation head")
    ax_share.set_ylim(0, 100)
    ax_share.set_title("Relation head's share")
    ax_time.legend(fontsize=8)
    budget = f" (at most {result['max_batch_pairs']} pairs)" if result.get("max_batch_pairs") else ""
    fig.suptitle(
        f"{result['docs_per_point']} docs x {result['words_per_doc']} words per point, "
        f"batch {result['batch_size']}{budget}, 1 process, {result.get('machine', {}).get('cores', '?')} cores",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# Memory --------------------------------------------------------------------


def _stream(nlp, n_docs: int, chunk: int, *, words, labels, lang, spans_key) -> Iterator[Any]:
    """`n_docs` docs made lazily, `chunk` at a time, with 0, 1, 2, 4, 8 or 16 entities (in turn per chunk)."""
    pattern = (0, 1, 2, 4, 8, 16)
    made = 0
    for i in range(0, n_docs, chunk):
        count = min(chunk, n_docs - made)
        n = pattern[(i // chunk) % len(pattern)]
        yield from synthetic_docs(nlp, count, n, 40, words=words, labels=labels, lang=lang, spans_key=spans_key, seed=i)
        made += count


def stream_check(
    nlp, n_docs: int = 10000, *, sample_every: int = 0, batch_size: int = 64, component: str = COMPONENT,
    words=None, labels=None, lang=None,
) -> Dict[str, Any]:
    """Resident memory sampled every `sample_every` docs (default: 20 samples)
    while `n_docs` docs, made on the fly, stream through `nlp.pipe`."""
    pipe = nlp.get_pipe(component)
    every = sample_every or max(1, n_docs // 20)
    docs = _stream(nlp, n_docs, batch_size, words=words, labels=labels, lang=lang, spans_key=pipe.cfg.get("spans_key"))
    samples: List[Dict[str, float]] = []
    relations = 0
    rss_start = _current_rss_mb()
    start = time.perf_counter()
    count = 0
    for count, doc in enumerate(nlp.pipe(docs, batch_size=batch_size), 1):
        relations += len(doc._.relations)
        if count % every == 0 or count == n_docs:
            samples.append({"docs": count, "rss_mb": _current_rss_mb(), "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    # after warm-up (a tenth of the docs, at least one round of entity counts), resident memory should stay flat
    warm = min(max(n_docs // 10, 6 * batch_size), n_docs // 2)
    settled = [s for s in samples if s["docs"] >= warm] or samples
    rss = [s["rss_mb"] for s in settled] or [rss_start]
    slope = 0.0
    if len(settled) >= 3:
        slope = float(numpy.polyfit([s["docs"] for s in settled], rss, 1)[0]) * 1000.0
    return {
        "docs": count,
        "relations": relations,
        "seconds": seconds,
        "docs_per_second": count / seconds if seconds else 0.0,
        "sample_every": every,
        "rss_before_mb": rss_start,
        "warmup_docs": warm,
        "rss_after_warmup_mb": rss[0],
        "rss_last_mb": rss[-1],
        "rss_max_mb": max(s["rss_mb"] for s in samples) if samples else rss_start,
        "rss_growth_after_warmup_mb": rss[-1] - rss[0],
        "rss_slope_mb_per_1000_docs": slope,
        "samples": samples,
    }


def _long_doc(nlp, tokens: int, entities: int, component: str) -> Dict[str, Any]:
    pipe = nlp.get_pipe(component)
    rss_loaded = _current_rss_mb()
    doc = synthetic_docs(nlp, 1, entities, tokens, spans_key=pipe.cfg.get("spans_key"))[0]
    pairs = pipe.get_candidates([doc]).n_pairs
    start = time.perf_counter()
    out = list(nlp.pipe([doc]))[0]
    return {
        "tokens": len(doc),
        "entities": entities,
        "max_distance": pipe.cfg.get("max_distance"),
        "candidate_pairs": pairs,
        "all_pairs": entities * (entities - 1),
        "relations": len(out._.relations),
        "seconds": time.perf_counter() - start,
        "rss_loaded_mb": rss_loaded,
        "peak_memory_mb": _peak_rss_mb(),
    }


def _long_doc_main() -> None:
    """Entry of the long-doc child process: JSON arguments in, JSON result out (last line)."""
    args = json.loads(sys.argv[1])
    result = _long_doc(_load(args["model"]), args["tokens"], args["entities"], args["component"])
    result["in_subprocess"] = True
    print(json.dumps(result))


def long_doc_check(model: Pipeline, tokens: int = 10000, entities: int = 300, *, component: str = COMPONENT) -> Dict[str, Any]:
    """One doc of `tokens` tokens with `entities` entities (candidate pairs
    bounded by the pipe's max_distance) through the pipeline. A path or
    package name runs in a fresh process, so `peak_memory_mb` is that
    process's own peak (model loaded, the doc done); a loaded pipeline runs
    here and reports this process's peak."""
    if not isinstance(model, (str, Path)):
        return {**_long_doc(model, tokens, entities, component), "in_subprocess": False}
    args = json.dumps({"model": str(model), "tokens": tokens, "entities": entities, "component": component})
    code = "from spacy_mlre.cli.benchmark import _long_doc_main; _long_doc_main()"
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"The long-doc check failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def benchmark_memory(
    model: Pipeline,
    *,
    data: Optional[Path] = None,
    stream_docs: int = 10000,
    sample_every: int = 0,
    long_doc_tokens: int = 10000,
    long_doc_entities: int = 300,
    batch_size: int = 64,
    component: str = COMPONENT,
    limit: int = 0,
) -> Dict[str, Any]:
    """The streaming check (flat resident memory over `stream_docs` docs) and
    the long-doc check (`long_doc_tokens` tokens, `long_doc_entities` entities)."""
    nlp = _load(model)
    words, labels, lang = text_source(nlp, data, limit)
    stream = stream_check(nlp, stream_docs, sample_every=sample_every, batch_size=batch_size, component=component,
                          words=words, labels=labels, lang=lang)
    long_doc = long_doc_check(model, long_doc_tokens, long_doc_entities, component=component) if long_doc_tokens else None
    return {
        "mode": "memory",
        "model": str(model) if isinstance(model, (str, Path)) else nlp.meta.get("name", "?"),
        "architecture": _architecture(nlp, component),
        "data": str(data) if data is not None else None,
        "batch_size": batch_size,
        "stream": stream,
        "long_doc": long_doc,
        "peak_memory_mb": _peak_rss_mb(),
        "machine": machine_info(),
    }


# Profile -------------------------------------------------------------------


def _short_function(name: str) -> str:
    """Paths in a pstats name from the package (site-packages/... or spacy_mlre/...) on."""
    for marker in ("site-packages/", "/spacy_mlre/"):
        if marker in name:
            head, _, rest = name.partition(marker)
            if "(" not in head:
                return (marker.strip("/") + "/" if marker == "/spacy_mlre/" else "") + rest
    return name


def _profile_report(profiler: cProfile.Profile, *, what: str, docs: int, tokens: int, pairs: int, top: int) -> Dict[str, Any]:
    stats = pstats.Stats(profiler)
    rows = []
    for func, (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": _short_function(pstats.func_std_string(func)), "ncalls": nc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: -r["cumtime"])
    counts = [x for x in (pairs, tokens) if x > 0]
    threshold = min(counts) if counts else 0
    # Python functions (not built-ins, whose names pstats puts in braces) called once per pair or token or more
    suspects = sorted(
        (r for r in rows if threshold and r["ncalls"] >= threshold and not r["function"].startswith("{")),
        key=lambda r: -r["ncalls"],
    )
    total = max((r["cumtime"] for r in rows), default=0.0)
    lines = [
        f"Profile of one batch: {what} on {docs} docs, {tokens} tokens, {pairs} candidate pairs ({total:.3f} s under cProfile).",
        f"Top {top} functions by cumulative time:",
        f"{'ncalls':>9} {'tottime':>9} {'cumtime':>9}  function",
    ]
    lines += [f"{r['ncalls']:>9} {r['tottime']:>9.4f} {r['cumtime']:>9.4f}  {r['function']}" for r in rows[:top]]
    lines.append(f"Python functions called at least {threshold} times (once per candidate pair or per token, whichever is fewer):")
    lines += [f"{r['ncalls']:>9} {r['tottime']:>9.4f} {r['cumtime']:>9.4f}  {r['function']}" for r in suspects] or ["  none"]
    return {
        "what": what,
        "docs": docs,
        "tokens": tokens,
        "candidate_pairs": pairs,
        "seconds": total,
        "top": rows[:top],
        "per_pair_or_token_calls": suspects,
        "text": "\n".join(lines) + "\n",
        "profiler": profiler,
    }


def profile_pipe(nlp, docs: Sequence[Any], *, component: str = COMPONENT, top: int = 25) -> Dict[str, Any]:
    """cProfile of `nlp.pipe` over `docs` as one batch (after one warm-up pass)."""
    list(nlp.pipe([d.copy() for d in docs], batch_size=max(1, len(docs))))
    batch = [d.copy() for d in docs]
    pairs = nlp.get_pipe(component).get_candidates(batch).n_pairs if batch else 0
    profiler = cProfile.Profile()
    profiler.enable()
    list(nlp.pipe(batch, batch_size=max(1, len(batch))))
    profiler.disable()
    return _profile_report(profiler, what="nlp.pipe", docs=len(batch), tokens=sum(len(d) for d in batch), pairs=pairs, top=top)


def profile_update(nlp, examples: Sequence[Any], optimizer, *, component: str = COMPONENT, top: int = 25) -> Dict[str, Any]:
    """cProfile of one `nlp.update` on `examples` (after one warm-up update)."""
    nlp.update(list(examples), sgd=optimizer)
    docs = [eg.predicted for eg in examples]
    pairs = nlp.get_pipe(component).get_candidates(docs).n_pairs if docs else 0
    profiler = cProfile.Profile()
    profiler.enable()
    nlp.update(list(examples), sgd=optimizer)
    profiler.disable()
    return _profile_report(profiler, what="nlp.update", docs=len(docs), tokens=sum(len(d) for d in docs), pairs=pairs, top=top)


def save_profile(report: Dict[str, Any], path: Path) -> Path:
    """The text report at `path`, the raw stats (for snakeviz / pstats) next to it as .prof."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report["text"], encoding="utf8")
    report["profiler"].dump_stats(str(path.with_suffix(".prof")))
    return path


def _public(report: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in report.items() if k != "profiler"}


# Training ------------------------------------------------------------------


def benchmark_training(
    config: Path,
    data: Path,
    *,
    steps: int = 20,
    batch_size: int = 32,
    profile_path: Optional[Path] = None,
    top: int = 25,
) -> Dict[str, Any]:
    """Examples per second of `nlp.update` for a config on DocBin data; with
    `profile_path`, also a cProfile of one update (see `profile_update`)."""
    from spacy.util import fix_random_seed, load_config, load_model_from_config, minibatch

    from ..corpus.reader import RelationCorpus

    fix_random_seed(0)
    cfg = load_config(config, overrides={"paths.train": str(data), "paths.dev": str(data)})
    nlp = load_model_from_config(cfg, auto_fill=True, validate=True)
    examples = list(RelationCorpus(data)(nlp))
    optimizer = nlp.initialize(lambda: examples)
    batches = list(minibatch(examples, batch_size))
    seen = 0
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[i % len(batches)]
        nlp.update(batch, sgd=optimizer)
        seen += len(batch)
    seconds = time.perf_counter() - start
    profile = None
    if profile_path is not None:
        report = profile_update(nlp, batches[0], optimizer, top=top)
        save_profile(report, profile_path)
        profile = {"path": str(profile_path), **_public(report)}
    return {
        "mode": "training",
        "config": str(config),
        "data": str(data),
        "steps": steps,
        "batch_size": batch_size,
        "examples": seen,
        "seconds": seconds,
        "examples_per_second": seen / seconds,
        "peak_memory_mb": _peak_rss_mb(),
        "profile": profile,
        "machine": machine_info(),
    }


# Command line --------------------------------------------------------------


def _is_docbin(arg: str) -> bool:
    """DATA is a .spacy file or a folder of them (a pipeline folder has a config.cfg)."""
    path = Path(arg)
    if path.is_file():
        return path.suffix == ".spacy"
    if path.is_dir():
        return not (path / "config.cfg").exists() and next(path.rglob("*.spacy"), None) is not None
    return False


def _parse_counts(spec: str) -> List[int]:
    try:
        counts = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--scaling takes comma-separated integers, got {spec!r}.")
    if not counts or min(counts) < 0:
        raise typer.BadParameter(f"--scaling takes non-negative entity counts, got {spec!r}.")
    return counts


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


@app.command("benchmark")
def benchmark_cli(
    paths: List[str] = typer.Argument(
        ...,
        metavar="PIPELINE... [DATA]",
        help="Pipelines (with --train: one config), then DATA: a DocBin with entities set (a .spacy file or a "
        "folder of them). Inference and --train need one pipeline and DATA; --scaling takes several pipelines "
        "(and earlier --scaling JSON files, merged into one table and plot), DATA optional (its words and "
        "entity labels fill the synthetic docs); --memory takes one pipeline, DATA optional.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Inference: processes for nlp.pipe"),
    repeat: int = typer.Option(3, "--repeat", "-r", help="Timed runs (the best is reported)"),
    limit: int = typer.Option(0, "--limit", help="Only the first N docs of DATA (0: all)"),
    train: bool = typer.Option(False, "--train", help="Time training (examples/s) for the config PIPELINE"),
    steps: int = typer.Option(20, "--steps", help="Training mode: number of updates"),
    scaling: Optional[str] = typer.Option(None, "--scaling", help="Entities per doc to time, e.g. 2,4,8,16,32,64"),
    docs_per_point: int = typer.Option(64, "--docs-per-point", help="Scaling: docs per entity count"),
    words_per_doc: int = typer.Option(100, "--words-per-doc", help="Scaling: tokens per doc"),
    max_batch_pairs: int = typer.Option(0, "--max-batch-pairs", help="Scaling: size batches by candidate pairs, at most this many (0: by docs)"),
    memory: bool = typer.Option(False, "--memory", help="Memory checks: streaming and one long doc"),
    stream_docs: int = typer.Option(10000, "--stream-docs", help="Memory: docs to stream"),
    long_doc: str = typer.Option("10000,300", "--long-doc", help="Memory: TOKENS,ENTITIES of the long doc (0 to skip)"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Inference or --train: cProfile one batch; text report here, raw stats next to it (.prof)"),
    top: int = typer.Option(25, "--top", help="Profile: functions to list"),
    component: str = typer.Option(COMPONENT, "--component", help="Name of the relation pipe"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON (scaling: and a Markdown table, .md)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Scaling: PNG of time per doc and head share vs entities per doc"),
) -> None:
    """Measure speed and memory of relation extraction pipelines."""
    if sum([train, scaling is not None, memory]) > 1:
        raise typer.BadParameter("Choose one of --train, --scaling, --memory.")
    if profile is not None and (scaling is not None or memory):
        raise typer.BadParameter("--profile goes with inference or --train.")
    data = Path(paths[-1]) if _is_docbin(paths[-1]) else None
    models = paths[:-1] if data is not None else list(paths)
    if scaling is not None:
        earlier = [json.loads(Path(m).read_text(encoding="utf8")) for m in models if m.endswith(".json") and Path(m).is_file()]
        pipelines = [m for m in models if not (m.endswith(".json") and Path(m).is_file())]
        results = earlier[:]
        if pipelines:
            results.append(
                benchmark_scaling(
                    pipelines, _parse_counts(scaling), data=data, docs_per_point=docs_per_point,
                    words_per_doc=words_per_doc, batch_size=batch_size, repeat=repeat, component=component, limit=limit,
                    max_batch_pairs=max_batch_pairs,
                )
            )
        if not results:
            raise typer.BadParameter("--scaling needs a pipeline or an earlier scaling JSON.")
        result = merge_scaling(results) if len(results) > 1 else results[0]
        table = scaling_table(result)
        typer.echo(table)
        if output is not None:
            output.with_suffix(".md").parent.mkdir(parents=True, exist_ok=True)
            output.with_suffix(".md").write_text(table, encoding="utf8")
        if plot is not None:
            typer.echo(f"plot: {plot_scaling(result, plot) or 'skipped (no matplotlib)'}")
    else:
        if len(models) != 1:
            raise typer.BadParameter(f"Give one pipeline{'' if memory else ' and DATA'}, got {len(models)} and DATA {data}.")
        if memory:
            tokens, _, entities = long_doc.partition(",")
            result = benchmark_memory(
                models[0], data=data, stream_docs=stream_docs, long_doc_tokens=int(tokens),
                long_doc_entities=int(entities or 0), batch_size=batch_size, component=component, limit=limit,
            )
            samples = result["stream"]["samples"]
            typer.echo("stream rss_mb: " + " ".join(f"{s['docs']}:{s['rss_mb']:.0f}" for s in samples))
        elif data is None:
            raise typer.BadParameter(f"DATA (a .spacy file or a folder of them) is missing or not found: {paths[-1]}")
        elif train:
            result = benchmark_training(Path(models[0]), data, steps=steps, batch_size=batch_size, profile_path=profile, top=top)
        else:
            result = benchmark_inference(
                models[0], data, batch_size=batch_size, n_process=n_process, repeat=repeat, component=component,
                limit=limit, profile_path=profile, top=top,
            )
        _echo_flat(result)
        typer.echo(f"{'machine':>22}: {json.dumps(result['machine'])}")
        if result.get("profile"):
            typer.echo(result["profile"]["text"])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2), encoding="utf8")
