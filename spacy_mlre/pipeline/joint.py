"""The joint model protocol of the `relation_extractor` pipe (mERE).

A pair-scoring model gets candidate entity pairs and returns a logit per pair
and label. A joint model finds the head and tail spans itself: it gets a
`JointBatch` and returns a `JointOutput`.

- Training (`gold` given): `relation_logits` per doc (one per output, as the
  pipe's decoding expects: labels, plus no-relation when single-label) and
  `span_loss`, the model's own span loss for the gold triples, already
  weighted. The pipe adds its relation loss (weighted by
  `model.attrs["relation_weight"]`) and calls backprop with the gradient of
  the relation logits; the model adds the span gradient itself.
- Prediction (`gold` is None): `triples`, per doc a list of
  (head start, head end, tail start, tail end, label index, score), ends
  exclusive. `spans` constrain the decoding to the doc's entities where the
  doc has entity annotation; None lets the model pick any span.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

Triple = Tuple[int, int, int, int, int, float]


@dataclass
class JointBatch:
    """docs and their languages (doc._.lang); spans: per doc (n, 2) entity
    offsets or None; gold: per doc (k, 5) rows (head start, head end, tail
    start, tail end, label index); thresholds: per label; multi_label: sigmoid
    per label, or softmax with a last no-relation output; n_labels: number of
    relation labels; lang_labels: at initialize only, the label indices seen
    per language in the training data."""

    docs: List[Doc]
    langs: List[str]
    n_labels: int
    multi_label: bool = True
    spans: Optional[List[Optional[numpy.ndarray]]] = None
    gold: Optional[List[numpy.ndarray]] = None
    thresholds: Optional[numpy.ndarray] = None
    lang_labels: Optional[Dict[str, Sequence[int]]] = None


@dataclass
class JointOutput:
    relation_logits: numpy.ndarray
    span_loss: float = 0.0
    triples: Optional[List[List[Triple]]] = None
