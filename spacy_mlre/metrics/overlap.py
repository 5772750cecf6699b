"""Micro P/R/F by sentence complexity, as the kernel-matrix paper's Table 4
(and CopyRE / CasRel) report it.

Each doc is classed by its GOLD triples, with CopyRE's rules (entities are
token spans here, not strings):
- Normal: no two triples share an entity (a doc without triples is Normal);
- EPO: two triples share the same ordered (head, tail) pair;
- SEO: the distinct pairs share an entity (a doc can be EPO and SEO);
- Single / Double / Multiple: 1, 2, >= 3 gold triples (docs without any
  are counted under "None"), and the 1, 2, 3, 4, >= 5 split of the paper's Figure 3.
Every doc of a class contributes all its gold and predicted triples (exact
head span, tail span, label and direction, as the relation scorer matches them).
"""
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Set, Tuple

from spacy.training import Example
from spacy.util import registry

from ..relations import RelationKey, relation_keys
from ..scorer import predicted_keys_in_reference

Span2 = Tuple[int, int]


def overlap_classes(triples: Iterable[RelationKey]) -> Set[str]:
    """Normal / EPO / SEO classes of one doc's gold triples (CopyRE's rules)."""
    triples = list(triples)
    pairs = [((hs, he), (ts, te)) for hs, he, ts, te, _ in triples]
    entities = {e for pair in pairs for e in pair}
    if len(entities) == 2 * len(pairs):
        return {"Normal"}
    classes = set()
    if len(set(pairs)) != len(pairs):
        classes.add("EPO")
    distinct = set(pairs)
    if len({e for pair in distinct for e in pair}) != 2 * len(distinct):
        classes.add("SEO")
    return classes


def count_class(n: int) -> List[str]:
    """Single / Double / Multiple (and Figure 3's 1-4, 5+) for n gold triples."""
    if n == 0:
        return ["None"]
    return [("Single", "Double", "Multiple")[min(n, 3) - 1], f"triples_{n}" if n < 5 else "triples_5+"]


def overlap_scores(examples: List[Example]) -> Dict[str, Any]:
    counts: Dict[str, Dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0, "docs": 0})
    for eg in examples:
        gold = set(relation_keys(eg.reference))
        pred = predicted_keys_in_reference(eg)
        tp = len(gold & pred)
        for name in sorted(overlap_classes(gold)) + count_class(len(gold)) + ["All"]:
            c = counts[name]
            c["tp"] += tp
            c["fp"] += len(pred) - tp
            c["fn"] += len(gold) - tp
            c["docs"] += 1
    order = ["Normal", "EPO", "SEO", "Single", "Double", "Multiple", "None",
             "triples_1", "triples_2", "triples_3", "triples_4", "triples_5+", "All"]
    table = {}
    for name in order:
        if name not in counts:
            continue
        c = counts[name]
        p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        table[name] = {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0,
                       "docs": c["docs"], "gold": c["tp"] + c["fn"], "predicted": c["tp"] + c["fp"]}
    return {"overlap": table}


@registry.misc("spacy_mlre.metrics.overlap.v1")
def make_overlap_metric():
    return overlap_scores
