"""Shared machinery of the converters: records, errors, counts, docs, sources.

Every format module turns its source records into `Example`s (words, entities
as token offsets, relations by entity index); `build_doc` turns an Example into
a Doc with one set of rules for all formats (duplicates, self-relations,
overlapping entities, no-relation labels), and `convert` drives the files,
counts everything that was kept, dropped, repaired or skipped, and writes one
DocBin per split. Nothing is dropped without a count in `SplitStats`.
"""
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple,
)

import srsly
from spacy.tokens import Doc, DocBin, Span
from spacy.util import filter_spans
from spacy.vocab import Vocab
from tqdm import tqdm

from ..relations import Relation, get_relation_rows

ENTITY_GROUP = "entities"
"""The span group holding every entity, overlapping ones included."""

UNTYPED_LABEL = "ENT"
"""Entity label for datasets whose entities have no type (SemEval, KBP37, CasRel, SMiLER)."""

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev", "development": "dev",
    "test": "test", "testing": "test",
}

_SPLIT_ORDER = {"train": 0, "dev": 1, "test": 2}

# Kinds of dropped / repaired items, shared so the summary and docs use one wording.
DROP_DUPLICATE = "duplicate relation (same head, tail and label; first kept)"
DROP_SELF = "self-relation (head and tail are the same entity span)"
REPAIR_DUP_ENTITY = "duplicate entity (same span and label) merged"


class InvalidRecord(Exception):
    """A malformed source record. `kind` is the short reason counted under
    `--skip-invalid`; `detail` says what exactly was wrong."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class ConversionError(Exception):
    """A malformed record that stops the run: names file, line and reason."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass
class Example:
    """One source record, format-independent, before it becomes a Doc.

    entities: (start, end, label) token offsets, end exclusive.
    relations: (head entity index, tail entity index, label, bag key).
    notes: what the format parser dropped or repaired, as
    ("dropped" | "repaired", kind) -> count; merged into the split's counts
    only when the whole record is valid.
    """

    words: List[str]
    spaces: List[bool]
    entities: List[Tuple[int, int, str]] = field(default_factory=list)
    relations: List[Tuple[int, int, str, Optional[str]]] = field(default_factory=list)
    doc_id: Optional[str] = None
    lang: Optional[str] = None
    relations_read: Optional[int] = None
    kb_ids: Optional[List[Optional[str]]] = None
    notes: Counter = field(default_factory=Counter)

    def drop(self, kind: str, n: int = 1) -> None:
        self.notes[("dropped", kind)] += n

    def repair(self, kind: str, n: int = 1) -> None:
        self.notes[("repaired", kind)] += n


@dataclass
class SplitStats:
    """Counts for one output DocBin, printed as the summary and saved as JSON."""

    docs: int = 0
    entities: int = 0
    entities_not_in_ents: int = 0
    relations_read: int = 0
    relations: Counter = field(default_factory=Counter)
    no_relation: Counter = field(default_factory=Counter)
    docs_per_lang: Counter = field(default_factory=Counter)
    relations_per_lang: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    skipped_where: List[str] = field(default_factory=list)

    def add_doc(self, doc: Doc, ex: Example, n_ents: int) -> None:
        n_rels = len(get_relation_rows(doc))
        self.docs += 1
        self.entities += len(doc.spans[ENTITY_GROUP])
        self.entities_not_in_ents += len(doc.spans[ENTITY_GROUP]) - n_ents
        lang = doc._.lang
        self.docs_per_lang[lang] += 1
        self.relations_per_lang[lang] += n_rels
        for row in get_relation_rows(doc):
            self.relations[row[6]] += 1
        for (what, kind), n in ex.notes.items():
            if what == "no_relation":
                self.no_relation[kind] += n
            elif what == "dropped":
                self.dropped[kind] += n
            else:
                self.repaired[kind] += n
        if ex.relations_read is not None:
            self.relations_read += ex.relations_read
        else:
            self.relations_read += len(ex.relations)

    def add_skip(self, kind: str, where: str) -> None:
        self.skipped[kind] += 1
        if len(self.skipped_where) < 20:
            self.skipped_where.append(where)

    def merge(self, other: "SplitStats") -> None:
        for name in ("docs", "entities", "entities_not_in_ents", "relations_read"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("relations", "no_relation", "docs_per_lang", "relations_per_lang",
                     "dropped", "repaired", "skipped"):
            getattr(self, name).update(getattr(other, name))
        self.skipped_where.extend(other.skipped_where[: 20 - len(self.skipped_where)])

    def to_dict(self) -> Dict[str, Any]:
        return {
            "docs": self.docs,
            "entities": self.entities,
            "entities_not_in_doc_ents": self.entities_not_in_ents,
            "relations_read": self.relations_read,
            "relations": sum(self.relations.values()),
            "relations_per_label": dict(sorted(self.relations.items())),
            "no_relation_pairs": dict(sorted(self.no_relation.items())),
            "docs_per_lang": dict(sorted(self.docs_per_lang.items())),
            "relations_per_lang": dict(sorted(self.relations_per_lang.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": list(self.skipped_where),
        }


# --- building docs ----------------------------------------------------------


def _dedupe_entities(ex: Example) -> Tuple[List[Tuple[int, int, str]], List[int]]:
    """Merge entities with the same span and label; return them and the
    old-index -> new-index map (relations keep pointing at the same entity)."""
    seen: Dict[Tuple[int, int, str], int] = {}
    unique: List[Tuple[int, int, str]] = []
    remap: List[int] = []
    for ent in ex.entities:
        if ent in seen:
            ex.repair(REPAIR_DUP_ENTITY)
        else:
            seen[ent] = len(unique)
            unique.append(ent)
        remap.append(seen[ent])
    return unique, remap


def _check_entities(ex: Example, entities: Sequence[Tuple[int, int, str]]) -> None:
    n = len(ex.words)
    for start, end, label in entities:
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end <= n:
            raise InvalidRecord(
                "entity offsets outside the text",
                f"entity {label!r} at tokens {start}:{end} (end exclusive), text has {n} tokens",
            )
        if not isinstance(label, str) or not label:
            raise InvalidRecord("entity without a label", f"entity at tokens {start}:{end}")


def _select_relations(
    ex: Example, spans: List[Span], remap: List[int], no_relation: FrozenSet[str]
) -> List[Relation]:
    """Apply the shared relation rules: no-relation labels become no record,
    self-relations and exact duplicates are dropped; all three are counted."""
    out: List[Relation] = []
    seen = set()
    n = len(remap)
    for head, tail, label, bag in ex.relations:
        for role, idx in (("head", head), ("tail", tail)):
            if not isinstance(idx, int) or not 0 <= idx < n:
                raise InvalidRecord(
                    "relation names a missing entity",
                    f"{role} entity index {idx!r} of relation {label!r}; the record has {n} entities",
                )
        if not isinstance(label, str) or not label:
            raise InvalidRecord("relation without a label", f"relation {head}->{tail}")
        if label in no_relation:
            ex.notes[("no_relation", label)] += 1
            continue
        h, t = spans[remap[head]], spans[remap[tail]]
        if (h.start, h.end) == (t.start, t.end):
            ex.drop(DROP_SELF)
            continue
        key = (h.start, h.end, t.start, t.end, label)
        if key in seen:
            ex.drop(DROP_DUPLICATE)
            continue
        seen.add(key)
        out.append(Relation(h, t, label, 1.0, bag))
    return out


def build_doc(vocab: Vocab, ex: Example, no_relation: FrozenSet[str] = frozenset()) -> Tuple[Doc, int]:
    """The Doc of one Example and the number of its entities in `doc.ents`.

    Every entity goes in `doc.spans["entities"]`; `doc.ents` gets the
    non-overlapping ones chosen by `spacy.util.filter_spans` (longest first,
    then earliest), so an overlapping entity keeps its relations through the
    span group.
    """
    if len(ex.words) != len(ex.spaces):
        raise InvalidRecord("token list mismatch", f"{len(ex.words)} words but {len(ex.spaces)} spaces")
    if not ex.words:
        raise InvalidRecord("empty text")
    if any(not w for w in ex.words):
        raise InvalidRecord("empty token", f"token {ex.words.index('')} is an empty string")
    entities, remap = _dedupe_entities(ex)
    _check_entities(ex, entities)
    doc = Doc(vocab, words=ex.words, spaces=ex.spaces)
    spans = [Span(doc, s, e, label=label) for s, e, label in entities]
    if ex.kb_ids is not None:
        for old, kb_id in enumerate(ex.kb_ids):
            if kb_id:
                spans[remap[old]].kb_id_ = kb_id
    doc.spans[ENTITY_GROUP] = spans
    ents = filter_spans(spans)
    doc.ents = ents
    if ex.lang:
        doc._.lang = ex.lang
    if ex.doc_id is not None:
        doc._.doc_id = ex.doc_id
    doc._.relations = _select_relations(ex, spans, remap, no_relation)
    return doc, len(ents)


# --- sources: files, splits, languages ---------------------------------------

LANGUAGE_NAMES = {
    "afrikaans": "af", "albanian": "sq", "amharic": "am", "arabic": "ar", "armenian": "hy",
    "basque": "eu", "belarusian": "be", "bengali": "bn", "bulgarian": "bg", "catalan": "ca",
    "chinese": "zh", "croatian": "hr", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "estonian": "et", "farsi": "fa", "finnish": "fi", "french": "fr",
    "galician": "gl", "georgian": "ka", "german": "de", "greek": "el", "gujarati": "gu",
    "hebrew": "he", "hindi": "hi", "hungarian": "hu", "icelandic": "is", "indonesian": "id",
    "irish": "ga", "italian": "it", "japanese": "ja", "kannada": "kn", "kazakh": "kk",
    "korean": "ko", "latvian": "lv", "lithuanian": "lt", "macedonian": "mk", "malay": "ms",
    "malayalam": "ml", "marathi": "mr", "nepali": "ne", "norwegian": "no", "persian": "fa",
    "polish": "pl", "portuguese": "pt", "punjabi": "pa", "romanian": "ro", "russian": "ru",
    "serbian": "sr", "sinhala": "si", "slovak": "sk", "slovenian": "sl", "spanish": "es",
    "swahili": "sw", "swedish": "sv", "tagalog": "tl", "tamil": "ta", "telugu": "te",
    "thai": "th", "turkish": "tr", "ukrainian": "uk", "urdu": "ur", "vietnamese": "vi",
    "welsh": "cy", "yoruba": "yo",
}
_ISO_CODES = frozenset(LANGUAGE_NAMES.values())


def language_from_name(name: str) -> Optional[str]:
    """A language tag from a folder or file name: 'german' -> 'de', 'de' -> 'de',
    'BR_portuguese' -> 'pt-BR' (region kept so variants get their own output
    folder; `doc._.lang` itself stores 'pt'). None when it names no language."""
    low = name.lower()
    if low in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[low]
    if low in _ISO_CODES:
        return low
    m = re.fullmatch(r"([a-z]{2})[_-]([a-z]+)", low)
    if m and m.group(2) in LANGUAGE_NAMES:
        return f"{LANGUAGE_NAMES[m.group(2)]}-{m.group(1).upper()}"
    m = re.fullmatch(r"([a-z]{2})[_-]([a-z]{2})", low)
    if m and m.group(1) in _ISO_CODES:
        return f"{m.group(1)}-{m.group(2).upper()}"
    return None


def language_from_filename(path: Path) -> Optional[str]:
    """A trailing ISO code in a file name, as RELX names its files (RELX_de.txt)."""
    m = re.search(r"[_-]([a-z]{2})$", path.stem)
    return m.group(1) if m and m.group(1) in _ISO_CODES else None


def split_from_name(path: Path) -> Optional[str]:
    """train / dev / test from a file name such as 'ai-train.json', 'val_triples.json'
    or 'TEST_FILE_FULL.TXT'; None when the name names no split."""
    words = re.split(r"[^a-z]+", path.stem.lower())
    for word in words:
        if word in SPLIT_ALIASES:
            return SPLIT_ALIASES[word]
    return None


@dataclass
class Source:
    """One input file and where its docs go: `group` is the output sub-folder
    ('' for OUTPUT_DIR itself), `split` the DocBin name, `lang` the default
    language of its records."""

    path: Path
    split: str
    group: str = ""
    lang: Optional[str] = None


# --- the driver ----------------------------------------------------------------

RawRecords = Iterator[Tuple[int, Any]]


class Converter:
    """A source format. Subclasses set the class attributes and implement
    `read` (stream raw records with their 1-based line numbers) and `parse`
    (raw record -> Example, raising InvalidRecord)."""

    name: str = ""
    patterns: Tuple[str, ...] = ("*",)
    exclude: FrozenSet[str] = frozenset()
    default_lang: Optional[str] = None
    no_relation: FrozenSet[str] = frozenset()

    def data_files(self, folder: Path) -> List[Path]:
        """The data files directly inside `folder`."""
        found = set()
        for pattern in self.patterns:
            found.update(p for p in folder.glob(pattern) if p.is_file() and p.name not in self.exclude)
        return sorted(found)

    def filter_files(self, files: List[Path], options: Dict[str, Any]) -> List[Path]:
        """Hook for format options that select files (CrossRE `--domains`)."""
        return files

    def read(self, path: Path) -> RawRecords:
        raise NotImplementedError

    def parse(self, raw: Any, source: Source) -> Example:
        raise NotImplementedError


def find_sources(
    conv: Converter, input_path: Path, lang: Optional[str], split: Optional[str],
    options: Optional[Dict[str, Any]] = None,
) -> List[Source]:
    """Input file or folder -> sources. A folder holding data files gives one
    group; a folder of sub-folders that hold data files (Multi-CrossRE's
    translation/<language>/, CasRel's data/<dataset>/) gives one group per
    sub-folder, named by its language code when the name is a language."""
    options = options or {}
    if input_path.is_file():
        return [_source(conv, input_path, "", lang, split)]
    if not input_path.is_dir():
        raise FileNotFoundError(f"No such file or folder: {input_path}")
    files = conv.filter_files(conv.data_files(input_path), options)
    if files:
        folder_lang = lang or language_from_name(input_path.name)
        return [_source(conv, f, "", folder_lang, split) for f in files]
    sources = []
    for sub in sorted(p for p in input_path.iterdir() if p.is_dir()):
        files = conv.filter_files(conv.data_files(sub), options)
        tag = language_from_name(sub.name)
        sources.extend(_source(conv, f, tag or sub.name, lang or tag, split) for f in files)
    if not sources:
        raise FileNotFoundError(
            f"No {conv.name} data files ({', '.join(conv.patterns)}) in {input_path} or its sub-folders."
        )
    return sources


def _source(conv: Converter, path: Path, group: str, lang: Optional[str], split: Optional[str]) -> Source:
    lang = lang or language_from_filename(path) or conv.default_lang
    return Source(path, split or split_from_name(path) or path.stem, group, lang)


def convert_source(
    conv: Converter, source: Source, vocab: Vocab, docbin: DocBin, stats: SplitStats,
    skip_invalid: bool = False,
) -> None:
    """Convert one file into `docbin`, counting into `stats`. A malformed record
    raises ConversionError (file, line, reason) unless skip_invalid, in which
    case it is counted under its kind and skipped."""
    # a progress bar on a terminal only (disable=None), so logs stay clean
    records = tqdm(conv.read(source.path), desc=source.path.name, unit=" records", leave=False, disable=None)
    for line, raw in records:
        try:
            ex = conv.parse(raw, source)
            if ex.doc_id is None:
                ex.doc_id = f"{source.path.stem}:{line}"
            doc, n_ents = build_doc(vocab, ex, conv.no_relation)
        except InvalidRecord as err:
            if not skip_invalid:
                raise ConversionError(source.path, line, str(err)) from None
            stats.add_skip(err.kind, f"{source.path}:{line}: {err}")
            continue
        docbin.add(doc)
        stats.add_doc(doc, ex, n_ents)


@contextmanager
def msgpack_registries_cached() -> Iterator[None]:
    """srsly looks its msgpack encoders / decoders up on every `msgpack_dumps` /
    `msgpack_loads` call, scanning the installed packages' entry points and the
    whole catalogue registry (about 1 ms, 2-3 calls per doc: most of the cost
    of `DocBin.add` and `DocBin.get_docs`). Look them up once and reuse the
    result inside the block; the registries are left as they were afterwards."""
    from srsly.msgpack import msgpack_decoders, msgpack_encoders

    registries = (msgpack_encoders, msgpack_decoders)
    for registry in registries:
        functions = registry.get_all()
        registry.get_all = lambda functions=functions: dict(functions)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for registry in registries:
            del registry.get_all


def new_docbin() -> DocBin:
    return DocBin(store_user_data=True)


def convert(
    conv: Converter, sources: Iterable[Source], output_dir: Path, vocab: Vocab,
    skip_invalid: bool = False,
    on_group_done: Optional[Callable[[str, Dict[str, SplitStats]], None]] = None,
) -> Dict[str, Dict[str, SplitStats]]:
    """Convert sources group by group, writing OUTPUT_DIR[/group]/<split>.spacy
    as each group finishes (so memory holds one group's DocBins at a time)."""
    by_group: Dict[str, List[Source]] = {}
    for src in sources:
        by_group.setdefault(src.group, []).append(src)
    results: Dict[str, Dict[str, SplitStats]] = {}
    with msgpack_registries_cached():
        for group, group_sources in by_group.items():
            results[group] = _convert_group(conv, group_sources, output_dir / group if group else output_dir,
                                            vocab, skip_invalid)
            if on_group_done is not None:
                on_group_done(group, results[group])
    return results


def _convert_group(
    conv: Converter, group_sources: List[Source], out: Path, vocab: Vocab, skip_invalid: bool
) -> Dict[str, SplitStats]:
    """Convert one group's files and write its DocBins, splits in train/dev/test order."""
    docbins: Dict[str, DocBin] = {}
    stats: Dict[str, SplitStats] = {}
    for src in sorted(group_sources, key=lambda s: (_SPLIT_ORDER.get(s.split, 3), s.split)):
        docbin = docbins.setdefault(src.split, new_docbin())
        convert_source(conv, src, vocab, docbin, stats.setdefault(src.split, SplitStats()), skip_invalid)
    out.mkdir(parents=True, exist_ok=True)
    for split, docbin in docbins.items():
        docbin.to_disk(out / f"{split}.spacy")
    return stats


def write_summary(results: Dict[str, Dict[str, SplitStats]], path: Path) -> None:
    data = {group: {split: st.to_dict() for split, st in splits.items()} for group, splits in results.items()}
    srsly.write_json(path, data)


def iter_lines(path: Path) -> RawRecords:
    """Non-empty lines with 1-based numbers, streamed (JSON lines, TSV)."""
    with path.open(encoding="utf8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield i, line


def load_json_line(line: str) -> Any:
    import json

    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidRecord("bad JSON", err.msg + f" (column {err.colno})") from None


def require(record: Dict[str, Any], key: str, kind: type) -> Any:
    """A required field of a JSON record with its type checked."""
    if not isinstance(record, dict):
        raise InvalidRecord("record is not a JSON object", f"got {type(record).__name__}")
    if key not in record:
        raise InvalidRecord("missing field", f"field {key!r} is missing")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRecord("wrong field type", f"field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value
