"""SMiLER (Samsung MultiLingual Entity and Relation Extraction): TSV files.

    id<TAB>entity_1<TAB>entity_2<TAB>label<TAB>text<TAB>lang
    1<TAB>Sergio Ramos<TAB>Real Madrid<TAB>is-member-of<TAB><e1>Sergio Ramos</e1> plays for <e2>Real Madrid</e2> .<TAB>en

A header row (first field `id`) is skipped. Rules (docs/data-formats.md):
- entities come from the `<e1>`/`<e2>` markup of `text` (`text.parse_markup`),
  label "ENT"; when the entity_1 / entity_2 column differs from the marked
  text, the markup wins and the record is counted as repaired;
- relations are directed entity_1 -> entity_2: Relation(head=e1, tail=e2, label);
- `no_relation` stores no relation (the pair stays a negative candidate) and
  is counted under its label;
- the language is the `lang` column, else `--lang`.
"""
from pathlib import Path

from .converter import Converter, RawRecords, iter_lines
from .record import UNTYPED_LABEL, InvalidRecord, Record, check_lang
from .sources import Source
from .text import char_spans_to_tokens, parse_markup, tokenize_with_cuts

COLUMNS = ("id", "entity_1", "entity_2", "label", "text", "lang")
REPAIR_COLUMN = "entity column differs from the marked text (markup used)"


def _norm(s: str) -> str:
    return " ".join(s.split())


class SMiLERConverter(Converter):
    name = "smiler"
    patterns = ("*.tsv",)
    no_relation = frozenset({"no_relation"})

    def read(self, path: Path) -> RawRecords:
        for number, line in iter_lines(path):
            if number == 1 and isinstance(line, str) and line.split("\t", 1)[0].strip().lower() == "id":
                continue
            yield number, line

    def parse(self, raw: str, source: Source) -> Record:
        fields = raw.split("\t")
        if len(fields) != len(COLUMNS):
            raise InvalidRecord(
                "wrong number of columns", f"{len(fields)} tab-separated fields, expected {len(COLUMNS)} ({', '.join(COLUMNS)})"
            )
        record_id, ent1, ent2, label, marked, lang = (f.strip() for f in fields)
        if not label:
            raise InvalidRecord("relation without a label", f"record {record_id!r}")
        if lang:
            check_lang(lang, "column 'lang'")
        text, e1, e2 = parse_markup(marked)
        words, spaces, starts, ends = tokenize_with_cuts(text, [*e1, *e2])
        (s1, t1), (s2, t2) = char_spans_to_tokens([e1, e2], starts, ends)
        rec = Record(
            words, spaces, [(s1, t1, UNTYPED_LABEL), (s2, t2, UNTYPED_LABEL)],
            [(0, 1, label, None)], doc_id=record_id or None, lang=lang or source.lang, relations_read=1,
        )
        for column, (start, end) in ((ent1, e1), (ent2, e2)):
            if column and _norm(column) != text[start:end]:
                rec.repair(REPAIR_COLUMN)
        return rec
