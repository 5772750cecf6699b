"""SemEval-2010 Task 8 official score: macro-F1 over the 9 relations, with
direction, `Other` excluded (as scorer v1.2 of the task computes it).

Each sentence has one marked pair. The system's answer for a sentence is its
highest-scoring relation (label plus direction: does the head come first?), or
`Other` when it predicts none. For relation r: P = right answers / sentences
answered r (either direction), R = right answers / gold sentences of r. A
right label with the wrong direction counts against both.
"""
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from spacy.training import Example
from spacy.util import registry

from ..relations import get_relation_rows

Answer = Tuple[str, Optional[bool]]  # (label, head-first?), ("Other", None)
OTHER: Answer = ("Other", None)


def _gold_answer(eg: Example) -> Answer:
    rows = get_relation_rows(eg.reference)
    if not rows:
        return OTHER
    hs, _, _, ts, _, _, label = rows[0][:7]
    return (str(label), int(hs) < int(ts))


def _predicted_answer(eg: Example) -> Answer:
    rows = get_relation_rows(eg.predicted)
    if not rows:
        return OTHER
    best = max(rows, key=lambda r: float(r[7]))
    return (str(best[6]), int(best[0]) < int(best[3]))


def semeval_scores(examples: List[Example], other_labels=("Other", "no_relation")) -> Dict[str, Any]:
    tp: Counter = Counter()
    answered: Counter = Counter()
    gold_count: Counter = Counter()
    for eg in examples:
        gold, pred = _gold_answer(eg), _predicted_answer(eg)
        if gold[0] not in other_labels:
            gold_count[gold[0]] += 1
        if pred[0] not in other_labels:
            answered[pred[0]] += 1
            if pred == gold:
                tp[pred[0]] += 1
    per_label = {}
    for label in sorted(set(gold_count) | set(answered)):
        p = tp[label] / answered[label] if answered[label] else 0.0
        r = tp[label] / gold_count[label] if gold_count[label] else 0.0
        per_label[label] = {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}
    relations = sorted(gold_count)
    macro = sum(per_label[label]["f"] for label in relations) / len(relations) if relations else 0.0
    return {"semeval_macro_f1": macro, "semeval_per_relation": per_label, "semeval_n_relations": len(relations)}


@registry.misc("spacy_mlre.metrics.semeval.v1")
def make_semeval_metric():
    return semeval_scores
