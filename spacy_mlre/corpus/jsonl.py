"""The project's own format: JSON lines with character offsets (docs/data-formats.md).

    {"id": "de-17", "lang": "de",
     "text": "Angela Merkel wurde in Hamburg geboren.",
     "entities": [{"start": 0, "end": 13, "label": "PER"}, {"start": 23, "end": 30, "label": "LOC"}],
     "relations": [{"head": 0, "tail": 1, "label": "born_in", "bag_key": "Q567|Q1055"}]}

`text`, `entities` and `relations` are required (lists may be empty); `lang`
is required unless `--lang` is given; `id`, `bag_key` and an entity's `kb_id`
are optional. Offsets are characters, end exclusive; entity and relation items
may also be lists: [start, end, label] and [head, tail, label]. Rules:
- the text is kept exactly and tokenised by the multilingual tokenizer with a
  token boundary at every entity start and end;
- whitespace at an entity's edges is trimmed (counted as repaired);
- relations point at entities by their index in `entities`; only relations
  that hold are written: every other ordered pair of entities is a negative.
"""
from pathlib import Path
from typing import Any, List, Optional, Tuple

from .converter import Converter, RawRecords, iter_lines
from .record import InvalidRecord, Record, brief, check_lang, is_int, load_json_line, require
from .sources import Source
from .text import char_spans_to_tokens, tokenize_with_cuts, trim_span

REPAIR_TRIMMED = "entity offsets trimmed of surrounding whitespace"


def _entity(item: Any, i: int) -> Tuple[int, int, str, Optional[str]]:
    if isinstance(item, dict):
        start, end, label, kb_id = item.get("start"), item.get("end"), item.get("label"), item.get("kb_id")
    elif isinstance(item, list) and len(item) == 3:
        (start, end, label), kb_id = item, None
    else:
        raise InvalidRecord("bad entity", f"entity {i}: expected {{start, end, label}}, got {brief(item)}")
    if not (is_int(start) and is_int(end)):
        raise InvalidRecord("bad entity", f"entity {i}: start and end must be integers, got {brief(item)}")
    if not isinstance(label, str) or not label:
        raise InvalidRecord("entity without a label", f"entity {i}: {brief(item)}")
    if kb_id is not None and not isinstance(kb_id, str):
        raise InvalidRecord("bad entity", f"entity {i}: kb_id must be a string")
    return start, end, label, kb_id


def _relation(item: Any, i: int) -> Tuple[Any, Any, Any, Optional[str]]:
    if isinstance(item, dict):
        head, tail, label, bag = item.get("head"), item.get("tail"), item.get("label"), item.get("bag_key")
    elif isinstance(item, list) and len(item) == 3:
        (head, tail, label), bag = item, None
    else:
        raise InvalidRecord("bad relation", f"relation {i}: expected {{head, tail, label}}, got {brief(item)}")
    for role, index in (("head", head), ("tail", tail)):
        # a JSON true is an int to Python: it would name entity 1
        if not is_int(index):
            raise InvalidRecord(
                "bad relation", f"relation {i}: {role} must be an entity index (an integer), got {brief(index)}"
            )
    if bag is not None and not isinstance(bag, str):
        raise InvalidRecord("bad relation", f"relation {i}: bag_key must be a string")
    return head, tail, label, bag


class JsonlConverter(Converter):
    name = "jsonl"
    patterns = ("*.jsonl",)

    def read(self, path: Path) -> RawRecords:
        return iter_lines(path)

    def parse(self, raw: str, source: Source) -> Record:
        record = load_json_line(raw)
        text = require(record, "text", str)
        items = [_entity(item, i) for i, item in enumerate(require(record, "entities", list))]
        relations = [_relation(item, i) for i, item in enumerate(require(record, "relations", list))]
        lang = record.get("lang")
        if lang is None:
            lang = source.lang
            if not lang:
                raise InvalidRecord("missing language", "no 'lang' field and no --lang option")
        check_lang(lang, "field 'lang'")
        repaired = 0
        spans: List[Tuple[int, int]] = []
        for i, (start, end, label, _kb) in enumerate(items):
            if not 0 <= start < end <= len(text):
                raise InvalidRecord(
                    "entity offsets outside the text",
                    f"entity {i} {label!r} at characters {start}:{end}, text has {len(text)} characters",
                )
            trimmed = trim_span(text, start, end)
            if trimmed is None:
                raise InvalidRecord("empty entity", f"entity {i} {label!r} covers only whitespace")
            repaired += trimmed != (start, end)
            spans.append(trimmed)
        words, spaces, starts, ends = tokenize_with_cuts(text, [c for span in spans for c in span])
        tokens = char_spans_to_tokens(spans, starts, ends)
        doc_id = record.get("id")
        if doc_id is not None and not (isinstance(doc_id, str) or is_int(doc_id)):
            raise InvalidRecord("wrong field type", f"field 'id' should be a string or integer, got {brief(doc_id)}")
        rec = Record(
            words, spaces, [(s, e, item[2]) for (s, e), item in zip(tokens, items)], relations,
            doc_id=None if doc_id is None else str(doc_id), lang=lang,
            kb_ids=[item[3] for item in items],
        )
        if repaired:
            rec.repair(REPAIR_TRIMMED, repaired)
        return rec
