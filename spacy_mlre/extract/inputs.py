"""Reading `extract`'s input: text files, JSON lines, DocBins, or a folder / glob
of them, as a stream of plain records in input order.

A record is what a worker needs to build one Doc, in plain Python values
(pickled cheaply to another process or machine, unlike a Doc):

- text files (`.txt`): one doc per line, no entities (the pipeline's NER finds
  them); blank lines are no docs.
- JSON lines (`.jsonl`, the project's format, docs/data-formats.md): `text`
  required; `entities` optional (absent: the pipeline's NER finds them; a list,
  even empty: these are the doc's entities); `id` and `lang` optional;
  `relations` is not read.
- DocBins (`.spacy`): the docs' words and spaces travel with the record, so the
  worker rebuilds the dataset's own tokenization (the one the entities were
  annotated on and the pipeline was trained and evaluated on) instead of
  re-tokenizing the text. Entities: every span of `doc.spans["entities"]`
  when the converter wrote that group (overlapping ones too), else `doc.ents`.

A malformed record is a `Skip` at its place in the stream (shards are cut by
record count, so they stay the same whatever is skipped), carrying file, line
and reason; with `strict` the reader raises instead.
"""
import glob
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

from ..corpus.converter import ConversionError, read_text_lines
from ..corpus.jsonl import _entity as parse_entity
from ..corpus.record import InvalidRecord, brief, check_lang, is_int, load_json_line, require
from ..corpus.text import trim_span

TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIX = ".jsonl"
DOCBIN_SUFFIX = ".spacy"
SUFFIXES = (*TEXT_SUFFIXES, JSONL_SUFFIX, DOCBIN_SUFFIX)

CharEntity = Tuple[int, int, str]


class ExtractError(Exception):
    """Wrong input or setup that stops `extract` with a message, never a traceback."""


class InputFile(NamedTuple):
    path: Path
    name: str
    """How doc ids and messages name the file: its path below the INPUT folder, or as given."""


class Item(NamedTuple):
    """One doc to extract from. `ents` None: the pipeline finds the entities;
    `words` None: the pipeline's tokenizer splits `text`."""

    source: str
    line: int
    doc_id: str
    lang: Optional[str]
    text: str
    ents: Optional[Tuple[CharEntity, ...]]
    words: Optional[Tuple[str, ...]] = None
    spaces: Optional[Tuple[bool, ...]] = None


class Skip(NamedTuple):
    """A malformed record: counted under `kind`, reported as `source:line: kind: detail`."""

    source: str
    line: int
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        reason = f"{self.kind}: {self.detail}" if self.detail else self.kind
        return f"{self.source}:{self.line}: {reason}"


Record = Union[Item, Skip]


def find_inputs(spec: Union[str, Path]) -> List[InputFile]:
    """The input files of INPUT: one file, every input file below a folder, or
    a glob's matches; sorted, so the record order (and the shards) is stable."""
    path = Path(spec)
    if path.is_file():
        files = [InputFile(path, path.name)]
    elif path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith("."))
        files = [InputFile(p, p.relative_to(path).as_posix()) for p in found]
    elif glob.has_magic(str(spec)):
        found = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
        files = [InputFile(p, p.as_posix()) for p in found]
    else:
        raise ExtractError(f"{spec} does not exist.")
    if not files:
        raise ExtractError(f"No input files in {spec}: expected {', '.join(SUFFIXES)} files.")
    for file in files:
        if file.path.suffix not in SUFFIXES:
            raise ExtractError(
                f"{file.path}: unknown input type {file.path.suffix or '(no suffix)'!r}; expected text (.txt, one doc "
                "per line), JSON lines (.jsonl) or a DocBin (.spacy)."
            )
    return files


def read_records(files: List[InputFile], strict: bool = False) -> Iterator[Record]:
    """Every record of the files in order; malformed ones as Skip (raised as
    ExtractError when `strict`). A file that is not text at all stops the run."""
    for file in files:
        for record in _read_file(file):
            if strict and isinstance(record, Skip):
                raise ExtractError(f"{record} (without --strict it would be skipped and counted)")
            yield record


def _read_file(file: InputFile) -> Iterator[Record]:
    suffix = file.path.suffix
    if suffix == DOCBIN_SUFFIX:
        yield from _read_docbin(file)
        return
    try:
        for line, text, error in read_text_lines(file.path):
            if error is not None:
                yield Skip(file.name, line, error.kind, error.detail)
            elif text.strip():
                yield _parse_line(file, line, text, suffix == JSONL_SUFFIX)
    except ConversionError as err:  # not text at all: UTF-16, binary data
        raise ExtractError(str(err)) from None


def _parse_line(file: InputFile, line: int, text: str, is_json: bool) -> Record:
    default_id = f"{file.name}:{line}"
    if not is_json:
        return Item(file.name, line, default_id, None, text, None)
    try:
        return _parse_json(file.name, line, text, default_id)
    except InvalidRecord as err:
        return Skip(file.name, line, err.kind, err.detail)


def _parse_json(source: str, line: int, raw: str, default_id: str) -> Item:
    record = load_json_line(raw)
    text = require(record, "text", str)
    if not text.strip():
        raise InvalidRecord("empty text")
    ents = None
    if record.get("entities") is not None:
        ents = tuple(_check_entity(text, *parse_entity(item, i)[:3], i) for i, item in enumerate(require(record, "entities", list)))
    lang = record.get("lang")
    if lang is not None:
        check_lang(lang, "field 'lang'")
    doc_id = record.get("id")
    if doc_id is not None and not (isinstance(doc_id, str) or is_int(doc_id)):
        raise InvalidRecord("wrong field type", f"field 'id' should be a string or integer, got {brief(doc_id)}")
    return Item(source, line, default_id if doc_id is None else str(doc_id), lang, text, ents)


def _check_entity(text: str, start: int, end: int, label: str, i: int) -> CharEntity:
    """Offsets inside the text, trimmed of whitespace at the edges (as the jsonl converter does)."""
    if not 0 <= start < end <= len(text):
        raise InvalidRecord(
            "entity offsets outside the text",
            f"entity {i} {label!r} at characters {start}:{end}, text has {len(text)} characters",
        )
    span = trim_span(text, start, end)
    if span is None:
        raise InvalidRecord("empty entity", f"entity {i} {label!r} covers only whitespace")
    return (span[0], span[1], label)


def _read_docbin(file: InputFile) -> Iterator[Record]:
    """Docs of a DocBin as records: line = the doc's 1-based position in the file.

    Read into a bare Vocab: only the strings are needed here, and a
    language's lexeme attributes (shape, like_url, ...) made reading the docs
    6x slower than the pair pipeline's prediction on them."""
    from spacy.attrs import IDX, LENGTH, SPACY
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from ..corpus.build import ENTITY_GROUP
    from ..corpus.converter import msgpack_registries_cached
    from ..language import DOC_ID_KEY, LANG_KEY

    try:
        docbin = DocBin(store_user_data=True).from_disk(file.path)
    except Exception as err:  # DocBin raises whatever msgpack / zlib raise on a bad file
        raise ExtractError(f"{file.path}: not a readable DocBin ({type(err).__name__}: {err}).") from None
    with msgpack_registries_cached():
        for i, doc in enumerate(docbin.get_docs(Vocab()), 1):
            text = doc.text
            tokens = doc.to_array([IDX, LENGTH, SPACY]).tolist()
            spans = doc.spans[ENTITY_GROUP] if ENTITY_GROUP in doc.spans else doc.ents
            yield Item(
                file.name, i, doc.user_data.get(DOC_ID_KEY) or f"{file.name}:{i}", doc.user_data.get(LANG_KEY), text,
                tuple(sorted((s.start_char, s.end_char, s.label_) for s in spans)),
                tuple(text[start:start + n] for start, n, _ in tokens), tuple(bool(space) for _, _, space in tokens),
            )


def count_docbin(path: Path) -> int:
    """Docs in a DocBin without decoding them."""
    from spacy.tokens import DocBin

    try:
        return len(DocBin().from_disk(path))
    except Exception as err:
        raise ExtractError(f"{path}: not a readable DocBin ({type(err).__name__}: {err}).") from None


class Scan(NamedTuple):
    """What one pass over the input found before any work starts."""

    records: int
    without_entities: Optional[str]
    """file:line of the first record whose entities the pipeline must find (None: all have entities)."""


def scan_inputs(files: List[InputFile], strict: bool = False) -> Scan:
    """Count the records (for the progress bar) and find the first one without
    entities (a pipeline without NER cannot take it); with `strict`, a
    malformed record stops here, before any work. DocBins are only counted:
    their docs always carry entities."""
    n = 0
    first: Optional[str] = None
    for file in files:
        if file.path.suffix == DOCBIN_SUFFIX:
            n += count_docbin(file.path)
            continue
        for record in read_records([file], strict):
            n += 1
            if first is None and isinstance(record, Item) and record.ents is None:
                first = f"{record.source}:{record.line}"
    return Scan(n, first)
