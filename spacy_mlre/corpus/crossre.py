"""CrossRE and Multi-CrossRE: JSON lines, one sentence a line.

    {"doc_key": "ai-train-1", "sentence": [tokens], "ner": [[start, end, type]],
     "relations": [[h_start, h_end, t_start, t_end, label, explanation, uncertain, syntax_ambiguity]]}

Offsets are token offsets with the END INCLUSIVE. Multi-CrossRE adds
`sentence-detokenized`, `token2charspan` and `ner_mapping_to_source` /
`relations_mapping_to_source` (indices into the English record with the same
`doc_key`).

Rules (docs/data-formats.md):
- tokens are the dataset's tokens; the text is `sentence-detokenized` where
  present (spaces read from `token2charspan`), else the tokens joined by spaces;
- entity types are kept as labels; a relation must name an annotated entity;
- bag key of every relation: "<doc_key>|<h>|<t>" with h, t the indices of head
  and tail in the ENGLISH record's `ner` list (through `ner_mapping_to_source`
  in translations), so one relation instance has the same key in every
  language. `ner_mapping_to_source` is used rather than
  `relations_mapping_to_source` because the latter is off by one in a few
  translated records, while the entity mapping always agrees with the labels.
  Each entity's kb id is "<doc_key>|<index in the English record>", so
  unrelated pairs can be matched across languages too.
- files are `<domain>-<split>.json`; the domains of a split are merged into
  one DocBin (`--domains` selects some).
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .converter import Converter, RawRecords, iter_lines
from .record import InvalidRecord, Record, brief, is_int, load_json_line, require
from .sources import Source

DOMAINS = ("ai", "literature", "music", "news", "politics", "science")
REPAIR_LEADING_SPACE = "whitespace before the first token of sentence-detokenized dropped"
REPAIR_GAP = "whitespace after a token other than one space normalised to one space"


def domain_of(path: Path) -> str:
    """'ai-train.json' -> 'ai'."""
    return path.stem.rsplit("-", 1)[0]


def _int_pair(value: Any, what: str) -> Tuple[int, int]:
    if (
        not isinstance(value, (list, tuple)) or len(value) < 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[:2])
    ):
        raise InvalidRecord("bad offsets", f"{what}: {brief(value)}")
    return value[0], value[1]


def _spaces_from_charspans(record: Dict[str, Any], words: List[str], ex_repairs: List[str]) -> List[bool]:
    """Spaces after each token, read from token2charspan over sentence-detokenized.
    The tokens must be exactly the text at their character spans and the gaps
    whitespace, or the record is malformed."""
    text = require(record, "sentence-detokenized", str)
    charspans = require(record, "token2charspan", list)
    if len(charspans) != len(words):
        raise InvalidRecord(
            "token2charspan does not match the tokens", f"{len(charspans)} char spans for {len(words)} tokens"
        )
    spans = [_int_pair(cs, "token2charspan") for cs in charspans]
    spaces = []
    for i, (word, (start, end)) in enumerate(zip(words, spans)):
        if text[start:end] != word or not 0 <= start < end <= len(text):
            raise InvalidRecord(
                "token2charspan does not match the text",
                f"token {i} {word!r} but sentence-detokenized[{start}:{end}] is {text[start:end]!r}",
            )
        nxt = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        gap = text[end:nxt] if nxt >= end else None
        if gap is None or (gap and not gap.isspace()):
            raise InvalidRecord(
                "token2charspan does not match the text", f"text between token {i} and the next is {gap!r}"
            )
        if gap not in ("", " "):
            ex_repairs.append(REPAIR_GAP)
        spaces.append(bool(gap))
    if spans and text[: spans[0][0]]:
        ex_repairs.append(REPAIR_LEADING_SPACE)
    return spaces


def _entities(record: Dict[str, Any], n_words: int) -> List[Tuple[int, int, str]]:
    out = []
    for item in require(record, "ner", list):
        start, end = _int_pair(item, "ner entry")
        if len(item) < 3 or not isinstance(item[2], str):
            raise InvalidRecord("entity without a label", f"ner entry {brief(item)}")
        if not 0 <= start <= end < n_words:
            raise InvalidRecord(
                "entity offsets outside the text",
                f"ner entry {brief(item)} (end inclusive) in a sentence of {n_words} tokens",
            )
        out.append((start, end + 1, item[2]))
    return out


def _source_indices(record: Dict[str, Any], n_entities: int) -> Sequence[int]:
    """Index of each entity in the English record's `ner` (itself for English)."""
    mapping = record.get("ner_mapping_to_source")
    if mapping is None:
        return range(n_entities)
    if not isinstance(mapping, list) or len(mapping) != n_entities:
        raise InvalidRecord(
            "ner_mapping_to_source does not match ner",
            f"{len(mapping) if isinstance(mapping, list) else brief(mapping)} mappings for {n_entities} entities",
        )
    if not all(is_int(i) for i in mapping):
        raise InvalidRecord("wrong field type", f"'ner_mapping_to_source' must be a list of integers, got {brief(mapping)}")
    return mapping


def _relations(
    record: Dict[str, Any], entities: List[Tuple[int, int, str]], doc_key: str, source: Sequence[int]
) -> List[Tuple[int, int, str, Optional[str]]]:
    """source: each entity's index in the English record."""
    index: Dict[Tuple[int, int], int] = {}
    for i, (start, end, _label) in enumerate(entities):
        index.setdefault((start, end), i)
    out = []
    for item in require(record, "relations", list):
        if not isinstance(item, list) or len(item) < 5 or not isinstance(item[4], str):
            raise InvalidRecord("bad relation", brief(item))
        head = _int_pair(item[0:2], "relation head")
        tail = _int_pair(item[2:4], "relation tail")
        ends = []
        for role, (start, end) in (("head", head), ("tail", tail)):
            key = (start, end + 1)
            if key not in index:
                raise InvalidRecord(
                    "relation names a missing entity",
                    f"{role} tokens {start}-{end} of relation {item[4]!r} is not in ner",
                )
            ends.append(index[key])
        h, t = ends
        out.append((h, t, item[4], f"{doc_key}|{source[h]}|{source[t]}"))
    return out


class CrossREConverter(Converter):
    name = "crossre"
    patterns = ("*.json", "*.jsonl")
    default_lang = "en"

    def filter_files(self, files: List[Path], options: Dict[str, Any]) -> List[Path]:
        domains = options.get("domains")
        if not domains:
            return files
        unknown = set(domains) - {domain_of(f) for f in files}
        if unknown and files:
            raise ValueError(
                f"Unknown domain(s) {sorted(unknown)}; the files name {sorted({domain_of(f) for f in files})}."
            )
        return [f for f in files if domain_of(f) in domains]

    def read(self, path: Path) -> RawRecords:
        return iter_lines(path)

    def parse(self, raw: str, source: Source) -> Record:
        record = load_json_line(raw)
        doc_key = str(require(record, "doc_key", str))
        words = require(record, "sentence", list)
        if not all(isinstance(w, str) for w in words):
            raise InvalidRecord("wrong field type", "'sentence' must be a list of token strings")
        repairs: List[str] = []
        if "token2charspan" in record or "sentence-detokenized" in record:
            spaces = _spaces_from_charspans(record, words, repairs)
        else:
            spaces = [True] * (len(words) - 1) + [False] if words else []
        entities = _entities(record, len(words))
        # kb id = the entity's English-source index: every pair, related or not,
        # then has one bag key in every language (AMNRE's held-out bags)
        english_index = _source_indices(record, len(entities))
        kb_ids = [f"{doc_key}|{i}" for i in english_index]
        rec = Record(
            list(words), spaces, entities, _relations(record, entities, doc_key, english_index),
            doc_id=doc_key, lang=source.lang, kb_ids=kb_ids,
        )
        for kind in repairs:
            rec.repair(kind)
        return rec
