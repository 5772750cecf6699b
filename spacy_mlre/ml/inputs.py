"""The data a relation model receives and returns.

The pipe (spacy_mlre/pipeline) builds these; the models (spacy_mlre/ml) read
them. They live here, below both, so that no model imports the pipe.

Two protocols:

- pair-scoring models (PairClassifier, EntityMarker, KernelMatrix, AMNRE) take
  `PairInputs` = (docs, Candidates) and return a (n_pairs, n_outputs) array of
  logits, or a tuple whose first item is that array and whose other items are
  what the model's own loss reads (KernelMatrix: the block elements' logits);
- joint models (MERE) take a `JointBatch` and return a `JointOutput`: they
  find the head and tail spans themselves.

One gradient contract for both: backprop takes a gradient of the output's own
type and shape. The pipe computes it (ml/losses.py), unless the model's paper
defines its own loss: then the model sets `model.attrs["get_loss"]`, a
`LossHook`, and the pipe calls that instead.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d


@dataclass
class Candidates:
    """Entities and ordered (head, tail) pairs of a batch of docs.

    spans: (n_ents, 2) token start/end of each entity within its own doc.
    labels: (n_ents,) the entity label hashes (`span.label`).
    ent_lengths: (n_docs,) number of entities per doc.
    pairs: (n_pairs, 2) head and tail indices into `spans` (batch-global).
    pair_lengths: (n_docs,) number of pairs per doc.
    """

    spans: numpy.ndarray
    labels: numpy.ndarray
    ent_lengths: numpy.ndarray
    pairs: numpy.ndarray
    pair_lengths: numpy.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def doc_offsets(self) -> numpy.ndarray:
        """Index of the first entity of each doc in `spans`."""
        return numpy.concatenate([[0], numpy.cumsum(self.ent_lengths)[:-1]]).astype("int64")

    @property
    def pair_doc(self) -> numpy.ndarray:
        """The doc index of every pair."""
        return numpy.repeat(numpy.arange(len(self.pair_lengths)), self.pair_lengths)

    def global_spans(self, doc_lengths: Sequence[int]) -> numpy.ndarray:
        """Entity spans as offsets into the batch's concatenated tokens."""
        token_offsets = numpy.concatenate([[0], numpy.cumsum(doc_lengths)[:-1]]).astype("int64")
        ent_doc = numpy.repeat(numpy.arange(len(self.ent_lengths)), self.ent_lengths)
        return self.spans + token_offsets[ent_doc, None]

    def pair_offsets(self) -> numpy.ndarray:
        """(n_pairs, 4) head start, head end, tail start, tail end of every pair."""
        return numpy.concatenate([self.spans[self.pairs[:, 0]], self.spans[self.pairs[:, 1]]], axis=1)


PairInputs = Tuple[List[Doc], Candidates]
Triple = Tuple[int, int, int, int, int, float]


@dataclass
class JointBatch:
    """The input of a joint model.

    docs and their languages (doc._.lang); n_labels: number of relation
    labels; multi_label: sigmoid per label, or softmax with a last no-relation
    output; spans: per doc (n, 2) entity offsets that constrain the decoding,
    or None to let the model pick any span; gold: per doc (k, 5) rows (head
    start, head end, tail start, tail end, label index) while training;
    thresholds: per label, for decoding; lang_labels: at initialize only, the
    label indices seen per language in the training data.
    """

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
    """The output of a joint model.

    relation_logits: (n_docs, n_outputs) which relations each doc holds.
    pointer_logits, pointer_mask, pointer_targets: while training, the span
        pointers' logits for every gold triple, the mask of real positions
        and the gold positions (what the model's span loss reads).
    triples: at prediction, per doc (head start, head end, tail start, tail
        end, label index, score), ends exclusive.
    The gradient a joint model's backprop takes is a JointOutput too, with
    the gradients in `relation_logits` and `pointer_logits`.
    """

    relation_logits: Floats2d
    pointer_logits: Optional[Any] = None
    pointer_mask: Optional[Any] = None
    pointer_targets: Optional[Any] = None
    triples: Optional[List[List[Triple]]] = None


# (model, inputs, output, targets (n_rows, n_labels) 0/1, row weights (n_rows,),
# multi_label) -> (loss, gradient of the output's type and shape)
LossHook = Callable[[Model, Any, Any, numpy.ndarray, numpy.ndarray, bool], Tuple[float, Any]]
# (model, inputs) -> auxiliary losses; extra weight updates that belong to
# training (AMNRE's adversarial steps), called by the pipe's update with an optimizer only
AuxiliaryUpdate = Callable[[Model, Any], Dict[str, float]]


def output_logits(output: Any) -> Floats2d:
    """The logits the pipe decodes from a pair-scoring model's output."""
    return output[0] if isinstance(output, tuple) else output
