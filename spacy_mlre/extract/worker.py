"""What runs in a worker: load the pipeline once, turn plain records into
Docs, run the pipeline, return relation rows.

Records in and rows out are plain tuples, never Docs: `nlp.pipe(n_process=2)`
sends every Doc through srsly msgpack, whose registry lookup made two
processes slower than one. The same functions run in the calling process
(`--n-process 1`), in a process pool and on Dask workers, so the output does
not depend on the engine.
"""
import threading
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import filter_spans

from ..corpus.record import InvalidRecord
from ..language import get_lang, set_doc_id, set_lang
from ..relations import get_relation_rows
from .inputs import Item

COLUMNS = (
    "doc_id", "lang",
    "head_text", "head_label", "head_start", "head_end",
    "tail_text", "tail_label", "tail_start", "tail_end",
    "label", "score",
)
"""One output row per relation; offsets are characters of the doc's text, end exclusive."""

SCORE_DECIMALS = 6
"""Scores are rounded so that the last bits of a float (which can differ with
the number of threads) never make two engines' outputs differ."""

Row = Tuple[Any, ...]


class Spec(NamedTuple):
    """How every worker loads and runs the pipeline (picklable, hashable: the cache key)."""

    pipeline: str
    component: Optional[str] = None
    batch_size: int = 64
    strict: bool = False
    threads: int = 0
    """torch threads per worker (0: leave torch's default)."""
    fmt: str = "jsonl"
    """jsonl: rows come back as encoded lines, so the encoding runs in parallel, not in the driver."""


class PipelineInfo(NamedTuple):
    """What the driver checks before any work: can the pipeline find entities itself?"""

    component: str
    entity_pipes: Tuple[str, ...]
    """Components that set the entities the relation pipe reads (an NER, an entity ruler)."""
    joint: bool
    """A joint model (mERE) finds its own entities."""
    spans_key: Optional[str]

    @property
    def finds_entities(self) -> bool:
        return bool(self.entity_pipes) or self.joint


class ChunkResult(NamedTuple):
    """A chunk's rows in record order (JSON lines for jsonl output), its
    counts, its skipped records, or the error that failed it."""

    shard: int
    chunk: int
    rows: List[Any]
    docs: int
    words: int
    skipped: List[Tuple[str, int, str, str]]
    error: Optional[str] = None


_PIPELINES: Dict[Spec, Tuple[Language, PipelineInfo]] = {}
_LOCK = threading.Lock()
_RUN_LOCK = threading.Lock()


def get_pipeline(spec: Spec) -> Tuple[Language, PipelineInfo]:
    """The pipeline of `spec`, loaded once per process (a Dask worker runs
    tasks in threads, hence the lock). Errors (no relation extractor, an
    untrained one) are ValueError with the message to show."""
    key = spec._replace(batch_size=0, strict=False, fmt="")
    with _LOCK:
        if key not in _PIPELINES:
            _PIPELINES[key] = _load(spec)
        return _PIPELINES[key]


def _load(spec: Spec) -> Tuple[Language, PipelineInfo]:
    import spacy

    from ..pipeline.relation_extractor import get_relation_extractor

    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    nlp = spacy.load(spec.pipeline)
    pipe = get_relation_extractor(nlp, spec.component, where=f"The pipeline {spec.pipeline}")
    name = next(n for n, p in nlp.pipeline if p is pipe)
    spans_key = pipe.cfg.get("spans_key")
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]
    wanted = "doc.spans" if spans_key else "doc.ents"
    entity_pipes = tuple(n for n in before if any(a.startswith(wanted) for a in nlp.get_pipe_meta(n).assigns))
    joint = pipe.model.attrs.get("protocol") == "joint"
    return nlp, PipelineInfo(name, entity_pipes, joint, spans_key)


def load_pipeline_info(spec: Spec) -> Tuple[Optional[PipelineInfo], Optional[str]]:
    """(info, None) once the pipeline is loaded here, or (None, message): a
    worker reports instead of raising, so the driver stops with the message."""
    try:
        return get_pipeline(spec)[1], None
    except Exception as err:  # any load failure is reported, with its type
        text = str(err) if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {err}"
        return None, f"Cannot load the pipeline {spec.pipeline}: {text}"


def extract_chunk(spec: Spec, shard: int, chunk: int, items: Sequence[Item]) -> ChunkResult:
    """Relation rows of `items`, in their order. A record whose entities do not
    fit the pipeline's tokens is skipped and counted (with `spec.strict` it
    fails the chunk, so nothing is written for its shard)."""
    nlp, info = get_pipeline(spec)
    docs: List[Optional[Doc]] = []
    skipped: List[Tuple[str, int, str, str]] = []
    for item in items:
        try:
            docs.append(make_doc(nlp, item, info))
        except InvalidRecord as err:
            if spec.strict:
                return ChunkResult(shard, chunk, [], 0, 0, [], f"{item.source}:{item.line}: {err}")
            skipped.append((item.source, item.line, err.kind, err.detail))
            docs.append(None)
    done: Dict[int, Doc] = {}
    for with_ents, disable in ((True, info.entity_pipes), (False, ())):
        group = [(i, d) for i, d in enumerate(docs) if d is not None and (items[i].ents is not None) == with_ents]
        if group:
            # one chunk at a time per process: a Dask worker with several threads shares one pipeline
            with _RUN_LOCK:
                out = list(nlp.pipe([d for _, d in group], batch_size=spec.batch_size, disable=list(disable)))
            done.update((i, doc) for (i, _), doc in zip(group, out))
    rows: List[Any] = []
    for i in sorted(done):
        rows.extend(doc_rows(done[i], items[i].doc_id, items[i].text))
    if spec.fmt == "jsonl":
        rows = [jsonl_line(row) for row in rows]
    return ChunkResult(shard, chunk, rows, len(done), sum(len(d) for d in done.values()), skipped)


def make_doc(nlp: Language, item: Item, info: PipelineInfo) -> Doc:
    """The Doc of a record: the record's words when it has them (DocBins), else
    the pipeline's tokenizer; entities from the record when it has them, which
    must start and end on tokens (else the record is malformed)."""
    if item.words is not None:
        doc = Doc(nlp.vocab, words=list(item.words), spaces=list(item.spaces or ()))
    else:
        doc = nlp.make_doc(item.text)
    if item.ents is not None:
        spans = []
        for i, (start, end, label) in enumerate(item.ents):
            span = doc.char_span(start, end, label=label)
            if span is None:
                raise InvalidRecord(
                    "entity boundary inside a token",
                    f"entity {i} {label!r} at characters {start}:{end} ({item.text[start:end]!r}) does not start "
                    "and end on a token of the pipeline's tokenizer",
                )
            spans.append(span)
        # as the converters do: every entity in the span group, the non-overlapping ones in doc.ents
        from ..corpus.build import ENTITY_GROUP

        doc.spans[ENTITY_GROUP] = spans
        if info.spans_key and info.spans_key != ENTITY_GROUP:
            doc.spans[info.spans_key] = spans
        doc.ents = filter_spans(spans)
    if item.lang:
        set_lang(doc, item.lang)
    set_doc_id(doc, item.doc_id)
    return doc


def doc_rows(doc: Doc, doc_id: str, text: Optional[str] = None) -> List[Row]:
    """The output rows of a doc's relations, from the stored relation rows
    (token and character offsets; deterministic head, tail, label order).
    `text`: the doc's text when known (`doc.text` joins every token)."""
    lang = get_lang(doc)
    text = doc.text if text is None else text
    rows = []
    for row in get_relation_rows(doc):
        hs, he, hl, ts, te, tl, label, score = row[:8]
        if len(row) > 9:
            hcs, hce, tcs, tce = (int(v) for v in row[9:13])
        else:  # rows stored before character offsets were kept
            hcs, hce, tcs, tce = doc[hs:he].start_char, doc[hs:he].end_char, doc[ts:te].start_char, doc[ts:te].end_char
        rows.append((
            doc_id, lang, text[hcs:hce], hl, hcs, hce, text[tcs:tce], tl, tcs, tce, label,
            round(float(score), SCORE_DECIMALS),
        ))
    return rows


_LINE = "{{" + ", ".join(f'"{name}": {{}}' for name in COLUMNS) + "}}\n"


def jsonl_line(row: Row) -> str:
    """A row as one JSON object with the columns in order: the bytes
    json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False) gives, 3x faster."""
    return _LINE.format(*(_encode(value) for value in row))


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring(value)
    return repr(value)  # ints, and floats as json writes them (finite: scores are checked when stored)
