"""Counts of one conversion, per split: docs, entities, relations per label
and per language, and every dropped, repaired or skipped item by kind.

Nothing is dropped without a count here; the counts are printed as the
summary and written to summary.json, so a conversion can be checked without
reading the DocBins.
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import srsly
from spacy.tokens import Doc

from ..relations import get_relation_rows
from .build import ENTITY_GROUP
from .record import Record

MAX_SKIPPED_EXAMPLES = 20
"""How many skipped records are kept by location, to show where they are."""


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

    def add_doc(self, doc: Doc, rec: Record, n_ents: int) -> None:
        """Count a converted doc and the notes its record collected on the way."""
        n_rels = len(get_relation_rows(doc))
        self.docs += 1
        self.entities += len(doc.spans[ENTITY_GROUP])
        self.entities_not_in_ents += len(doc.spans[ENTITY_GROUP]) - n_ents
        lang = doc._.lang
        self.docs_per_lang[lang] += 1
        self.relations_per_lang[lang] += n_rels
        for row in get_relation_rows(doc):
            self.relations[row[6]] += 1
        for (what, kind), n in rec.notes.items():
            if what == "no_relation":
                self.no_relation[kind] += n
            elif what == "dropped":
                self.dropped[kind] += n
            else:
                self.repaired[kind] += n
        if rec.relations_read is not None:
            self.relations_read += rec.relations_read
        else:
            self.relations_read += len(rec.relations)

    def add_skip(self, kind: str, where: str) -> None:
        self.skipped[kind] += 1
        if len(self.skipped_where) < MAX_SKIPPED_EXAMPLES:
            self.skipped_where.append(where)

    def merge(self, other: "SplitStats") -> None:
        for name in ("docs", "entities", "entities_not_in_ents", "relations_read"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("relations", "no_relation", "docs_per_lang", "relations_per_lang",
                     "dropped", "repaired", "skipped"):
            getattr(self, name).update(getattr(other, name))
        self.skipped_where.extend(other.skipped_where[: MAX_SKIPPED_EXAMPLES - len(self.skipped_where)])

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


def write_summary(results: Dict[str, Dict[str, SplitStats]], path: Path) -> None:
    """summary.json: the counts of every group and split."""
    data = {group: {split: st.to_dict() for split, st in splits.items()} for group, splits in results.items()}
    srsly.write_json(path, data)
