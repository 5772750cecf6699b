"""SemEval-2010 Task 8, KBP37 and RELX: one parser for their shared block layout.

    8001<TAB>"The most common <e1>audits</e1> were about <e2>waste</e2> and recycling."
    Message-Topic(e1,e2)
    Comment: optional, SemEval only
    <blank line(s)>

Rules (docs/data-formats.md):
- markers removed as in `text.parse_markup`, the text tokenised so each entity is
  whole tokens; the two entities get the label "ENT" (the datasets are untyped);
- `Label(e1,e2)` is stored as Relation(head=e1, tail=e2, "Label") and
  `Label(e2,e1)` as Relation(head=e2, tail=e1, "Label"): direction lives in the
  head/tail order, the label name has no suffix;
- `Other` (SemEval) and `no_relation` (KBP37, RELX) store no relation: the pair
  stays a negative candidate and is counted under its label;
- any other direction tag is a malformed record; a label without a tag is read
  as (e1,e2) and counted as repaired.
"""
import re
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

from .converter import Converter, RawRecords, read_text_lines
from .record import UNTYPED_LABEL, InvalidRecord, Record
from .sources import Source, language_from_filename, split_from_name
from .text import char_spans_to_tokens, parse_markup, tokenize_with_cuts

NO_RELATION_LABELS = frozenset({"Other", "no_relation"})
REPAIR_NO_TAG = "label without direction tag, read as (e1,e2)"

_RECORD_START = re.compile(r"^\s*([^\s\t]+)\t(.*)$")
_LABEL = re.compile(r"^(?P<label>[^()]+?)\s*\((?P<tag>[^()]*)\)$")
_DIRECTIONS = {"e1,e2": (0, 1), "e2,e1": (1, 0)}


class Block(NamedTuple):
    """A record as read: its id, quoted sentence and the other lines (label,
    comment); `stray` holds a line found outside any record; `error` why one
    of its lines is not UTF-8 text (the block is then invalid as a whole)."""

    record_id: Optional[str]
    sentence: str
    lines: List[str]
    stray: Optional[str] = None
    error: Optional[InvalidRecord] = None


def read_blocks(path: Path) -> Iterator[Tuple[int, Block]]:
    """Stream the blocks of a file with the line number of each id line. A line
    that is not UTF-8 still shows where blocks start and end (its bytes are
    kept as surrogates), and makes its block invalid."""
    current: Optional[Tuple[int, Block]] = None
    for number, line, error in read_text_lines(path):
        if not line.strip():
            continue
        m = _RECORD_START.match(line)
        if m:
            if current is not None:
                yield current
            current = (number, Block(m.group(1), m.group(2), [], error=error))
        elif current is None:
            yield number, Block(None, "", [], stray=line, error=error)
        else:
            current[1].lines.append(line.strip())
            if error is not None and current[1].error is None:
                error = InvalidRecord(error.kind, f"line {number}: {error.detail}")
                current = (current[0], current[1]._replace(error=error))
    if current is not None:
        yield current


def parse_label(line: str) -> Tuple[str, Optional[Tuple[int, int]]]:
    """'Component-Whole(e2,e1)' -> ('Component-Whole', (1, 0)): entity indices of
    head and tail; None when the label carries no direction tag."""
    m = _LABEL.match(line)
    if not m:
        if "(" in line or ")" in line:
            raise InvalidRecord("unknown direction tag", f"cannot read label line {line!r}")
        return line, None
    tag = m.group("tag").replace(" ", "")
    if tag not in _DIRECTIONS:
        raise InvalidRecord("unknown direction tag", f"{m.group('tag')!r} in {line!r}; expected (e1,e2) or (e2,e1)")
    return m.group("label"), _DIRECTIONS[tag]


def _label_line(block: Block) -> str:
    lines = [ln for ln in block.lines if not ln.startswith("Comment")]
    if not lines:
        raise InvalidRecord("missing label line", f"record {block.record_id!r} has no label line")
    if len(lines) > 1:
        raise InvalidRecord("unexpected line in record", f"record {block.record_id!r}: {lines[1]!r}")
    return lines[0]


def _unquote(sentence: str) -> str:
    s = sentence.strip()
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        return s[1:-1]
    return s


class MarkedBlockConverter(Converter):
    """SemEval-2010 Task 8 / KBP37 / RELX blocks."""

    patterns = ("*.txt", "*.TXT")
    default_lang = "en"
    no_relation = NO_RELATION_LABELS

    def data_files(self, folder: Path) -> List[Path]:
        """Files named after a split (train.txt) or a language (RELX_de.txt)."""
        return [
            p for p in super().data_files(folder)
            if not p.name.lower().startswith("readme")
            and (split_from_name(p) or language_from_filename(p))
        ]

    def read(self, path: Path) -> RawRecords:
        return read_blocks(path)

    def parse(self, raw: Block, source: Source) -> Record:
        if raw.error is not None:
            raise raw.error
        if raw.stray is not None:
            raise InvalidRecord("line outside a record", f"expected 'id<TAB>\"sentence\"', got {raw.stray!r}")
        label, direction = parse_label(_label_line(raw))
        text, e1, e2 = parse_markup(_unquote(raw.sentence))
        words, spaces, starts, ends = tokenize_with_cuts(text, [*e1, *e2])
        (s1, t1), (s2, t2) = char_spans_to_tokens([e1, e2], starts, ends)
        rec = Record(
            words, spaces, [(s1, t1, UNTYPED_LABEL), (s2, t2, UNTYPED_LABEL)],
            doc_id=raw.record_id, lang=source.lang, relations_read=1,
        )
        if direction is None:
            if label not in self.no_relation:
                rec.repair(REPAIR_NO_TAG)
            direction = (0, 1)
        rec.relations.append((direction[0], direction[1], label, None))
        return rec


class SemEvalConverter(MarkedBlockConverter):
    name = "semeval2010"

    def data_files(self, folder: Path) -> List[Path]:
        """The official release keeps its labelled files in sub-folders:
        TRAIN_FILE.TXT and TEST_FILE_FULL.TXT (TEST_FILE.txt has no labels)."""
        official = sorted(
            p for p in folder.rglob("*")
            if p.is_file() and p.name.upper() in ("TRAIN_FILE.TXT", "TEST_FILE_FULL.TXT")
        )
        return official or super().data_files(folder)


class KBP37Converter(MarkedBlockConverter):
    name = "kbp37"
