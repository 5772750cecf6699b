"""NYT and WebNLG as preprocessed for CasRel (and their `-star` variants).

    [{"text": "Peter Stöger is manager of 1 . FC Köln ...",
      "triple_list": [["1 . FC Köln", "manager", "Peter Stöger"], ...]}, ...]

(a JSON array; JSON lines with the same objects are read too). Only entity
strings are given, so the converter finds their tokens. Rules
(docs/data-formats.md):
- the text is already tokenised: tokens are its whitespace-separated words;
- every distinct entity string of a record is one entity (label "ENT"),
  located as a run of whole tokens; strings are placed longest first, each at
  its first occurrence that does not overlap an entity already placed (so in
  "A.C. Cesena ground is in Cesena" the city is the second "Cesena"); when every
  occurrence overlaps, the first is used; both cases are counted;
- a string with no exact occurrence is searched again ignoring case and
  accents ("Cancún" for "Cancun", counted as repaired); one still not found
  drops its triples, counted;
- `-star` variants give only the last word of an entity: the same rules apply
  to that one word;
- a triple whose head and tail are the same string (frequent in the `-star`
  variants: "Adams County ... Pennsylvania" gives "Pennsylvania" twice) puts
  the head on the string's entity and the tail on its next free occurrence,
  counted as repaired because the order is a guess; with one occurrence only
  it is a self-relation, dropped and counted (base rules);
- head first, tail second: Relation(head, tail, relation); exact duplicate
  triples are dropped and counted (base rules).
"""
import json
import unicodedata
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from .converter import ConversionError, Converter, RawRecords, check_text_file, iter_lines, undecoded
from .record import (
    UNTYPED_LABEL, InvalidRecord, Record, brief, check_no_lone_surrogates, load_error_detail, load_json_line, require,
)
from .sources import Source

REPAIR_FOLDED = "entity string found only ignoring case and accents"
DROP_NOT_FOUND = "triple whose entity string is not in the text"
REPAIR_AMBIGUOUS = "entity string occurs more than once: first free occurrence used"
REPAIR_OVERLAP = "entity string occurs only inside a longer entity: first occurrence used"
REPAIR_SAME_STRING = "head and tail are the same string: tail put on its next occurrence (order guessed)"


def fold(token: str) -> str:
    """Lower case without accents: 'Cancún' -> 'cancun'."""
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def occurrences(tokens: Sequence[str], needle: Sequence[str]) -> List[int]:
    """Start indices where `needle` occurs as a run of whole tokens."""
    n = len(needle)
    if n == 0:
        return []
    first = needle[0]
    return [
        i for i in range(len(tokens) - n + 1)
        if tokens[i] == first and list(tokens[i:i + n]) == list(needle)
    ]


Span = Tuple[int, int]


def _find(tokens: List[str], string: str, rec: Record) -> List[int]:
    """Exact occurrences, else occurrences ignoring case and accents (counted)."""
    needle = string.split()
    starts = occurrences(tokens, needle)
    if not starts:
        starts = occurrences([fold(t) for t in tokens], [fold(t) for t in needle])
        if starts:
            rec.repair(REPAIR_FOLDED)
    return starts


def _overlaps(start: int, length: int, taken: List[Span]) -> bool:
    return any(start < e and b < start + length for b, e in taken)


def locate_entities(tokens: List[str], strings: List[str], rec: Record) -> Dict[str, List[Span]]:
    """Token span of each entity string (rules in the module docstring):
    string -> [span], or [span, second span] for a string that is both head and
    tail of one triple (`same`); strings not found are left out."""
    taken: List[Span] = []
    found: Dict[str, List[Span]] = {}
    for string in sorted(set(strings), key=lambda s: (-len(s.split()), strings.index(s))):
        starts = _find(tokens, string, rec)
        if not starts:
            continue
        length = len(string.split())
        free = [s for s in starts if not _overlaps(s, length, taken)]
        if len(starts) > 1:
            rec.repair(REPAIR_AMBIGUOUS if free else REPAIR_OVERLAP)
        start = free[0] if free else starts[0]
        taken.append((start, start + length))
        found[string] = [(start, start + length)] + [(s, s + length) for s in free if s != start]
    return found


def _json_lines(path: Path) -> RawRecords:
    """The values of a JSON-lines file; a line that is not JSON comes as its InvalidRecord."""
    for number, line in iter_lines(path):
        if isinstance(line, InvalidRecord):
            yield number, line
            continue
        try:
            yield number, load_json_line(line)
        except InvalidRecord as err:
            yield number, err


def _no_lone_surrogates(source: str, obj: Any) -> Any:
    """The object, or why it is invalid (as the record to skip or stop on)."""
    try:
        check_no_lone_surrogates(source, obj)
    except InvalidRecord as err:
        return err
    return obj


def iter_json_records(path: Path) -> RawRecords:
    """The objects of a JSON array (or of JSON lines) with the line each starts on.
    A syntax error inside an array stops the run even with --skip-invalid: the
    next record cannot be found reliably. A record with bytes that are not
    UTF-8 comes as its InvalidRecord (the array around it is still read)."""
    check_text_file(path)
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
        text = f.read()
    stripped = text.lstrip()
    if not stripped.startswith("["):
        yield from _json_lines(path)
        return
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line = 1 + text.count("\n", 0, pos)
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            if text[pos] == "\n":
                line += 1
            pos += 1
        if pos >= len(text):
            raise ConversionError(path, line, "bad JSON: the array is not closed")
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            problem = undecoded(text[err.pos:err.pos + 1])
            reason = f"{problem}" if problem else f"bad JSON: {err.msg} (column {err.colno})"
            raise ConversionError(path, err.lineno, reason) from None
        except (RecursionError, ValueError) as err:  # nesting too deep, an integer too long
            raise ConversionError(path, line, f"bad JSON: {load_error_detail(err)}") from None
        yield line, undecoded(text[pos:end]) or _no_lone_surrogates(text[pos:end], obj)
        line += text.count("\n", pos, end)
        pos = end


class CasRelConverter(Converter):
    name = "casrel"
    patterns = ("*.json", "*.jsonl")
    exclude = frozenset({"rel2id.json"})
    default_lang = "en"

    def read(self, path: Path) -> RawRecords:
        return iter_json_records(path)

    def parse(self, raw: Any, source: Source) -> Record:
        record = raw
        tokens = require(record, "text", str).split()
        triples = require(record, "triple_list", list)
        for triple in triples:
            if not (isinstance(triple, list) and len(triple) == 3 and all(isinstance(x, str) for x in triple)):
                raise InvalidRecord("bad triple", f"expected [head, relation, tail] strings, got {brief(triple)}")
        rec = Record(tokens, [True] * (len(tokens) - 1) + [False] if tokens else [],
                     lang=source.lang, relations_read=len(triples))
        strings = [s for h, _r, t in triples for s in (h, t)]
        found = locate_entities(tokens, strings, rec)
        same = {h for h, _r, t in triples if h == t and len(found.get(h, ())) > 1}
        spans = {(s, 0): spans[0] for s, spans in found.items()}
        spans.update({(s, 1): found[s][1] for s in same})
        index = {}
        for key, span in sorted(spans.items(), key=lambda item: item[1]):
            index[key] = len(rec.entities)
            rec.entities.append((span[0], span[1], UNTYPED_LABEL))
        for head, rel, tail in triples:
            if head not in found or tail not in found:
                rec.drop(DROP_NOT_FOUND)
                continue
            if head in same and head == tail:
                rec.repair(REPAIR_SAME_STRING)
                rec.relations.append((index[(head, 0)], index[(head, 1)], rel, None))
            else:
                rec.relations.append((index[(head, 0)], index[(tail, 0)], rel, None))
        return rec
