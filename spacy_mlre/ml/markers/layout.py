"""Entity-marker layout: where the markers go in each pair's marked sequence.

The entity-marker models encode one sequence per candidate pair:

    [CLS] w_a .. <head open> head <head close> .. <tail open> tail <tail close> .. w_b [SEP]

(markers in text order, so a tail before its head is marked first). The marked
sequences of all pairs of a batch are built here as flat index arrays into one
table: the encoder's units of every doc (one row per word for a word encoder,
one per word piece for a transformer) followed by the rows of the marker
vocabulary. Window bounds, marker positions and the gather index are numpy
array operations over all pairs at once: no Python loop per pair or token.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy

MARKERS = ("uniform", "typed")
POOLINGS = ("cls", "entity_start", "entity_maxpool")

# Marker vocabulary: fixed rows first, then one typed marker per entity label.
CLS, SEP, PAD = "[CLS]", "[SEP]", "[PAD]"
UNIFORM = ("[E1]", "[/E1]", "[E2]", "[/E2]")
# typed marker of an entity label not seen when the model was initialized
GENERIC_TYPED = "[ENT]"
FIXED_MARKERS = (CLS, SEP, PAD) + UNIFORM + (GENERIC_TYPED,)
# rows per sequence that are not words: [CLS], [SEP] and the four markers
N_EXTRA = 6


def typed_marker(label: str) -> str:
    """The typed marker of an entity label: `PER` -> `[PER]` (start and end)."""
    return f"[{label}]"


def marker_vocab(entity_labels: Sequence[str]) -> List[str]:
    """The fixed markers, then a typed marker per entity label (sorted, unique)."""
    typed = [typed_marker(label) for label in sorted(set(entity_labels))]
    return list(FIXED_MARKERS) + [m for m in typed if m not in FIXED_MARKERS]


def marker_rows(markers: str, vocab: Sequence[str], ent_labels: Sequence[str], pairs: numpy.ndarray) -> numpy.ndarray:
    """(n_pairs, 4) vocab rows of [head open, head close, tail open, tail close].

    uniform: [E1] head [/E1], [E2] tail [/E2] (E1 is the head: direction is in
    the markers). typed: [T] head [T], [T'] tail [T'], with [ENT] for a label
    that has no marker in `vocab` (unseen when the model was initialized).
    ent_labels: the label of every entity; pairs: (n_pairs, 2) head/tail rows.
    """
    n = int(pairs.shape[0])
    if markers == "uniform":
        row = [vocab.index(m) for m in UNIFORM]
        return numpy.tile(numpy.array(row, dtype="int64"), (n, 1))
    if markers != "typed":
        raise ValueError(f"Unknown markers {markers!r}: choose one of {', '.join(MARKERS)}.")
    index: Dict[str, int] = {m: i for i, m in enumerate(vocab)}
    generic = index[GENERIC_TYPED]
    per_label = {lab: index.get(typed_marker(lab), generic) for lab in set(ent_labels)}
    ent_rows = numpy.array([per_label[lab] for lab in ent_labels], dtype="int64")
    heads, tails = ent_rows[pairs[:, 0]], ent_rows[pairs[:, 1]]
    return numpy.stack([heads, heads, tails, tails], axis=1).reshape((n, 4))


@dataclass
class PairPlan:
    """The word-level plan of the marked sequences of a batch (global word indices).

    head, tail: (n_pairs, 2) start/end of the entities in the batch's concatenated words.
    doc_bounds: (n_pairs, 2) first and end word of each pair's doc.
    marker_rows: (n_pairs, 4) marker vocab rows [head open, head close, tail open, tail close].
    """

    head: numpy.ndarray
    tail: numpy.ndarray
    doc_bounds: numpy.ndarray
    marker_rows: numpy.ndarray

    @property
    def n_pairs(self) -> int:
        return int(self.head.shape[0])


@dataclass
class Layout:
    """The marked sequences as flat indices into [units; marker vocab rows].

    index: (sum(lengths),) row of each sequence position (rows >= n_units are
        marker vocab rows: n_units + vocab row).
    lengths: (n_pairs,) sequence lengths.
    marker_pos: (n_pairs, 4) positions in its sequence of [head open, head
        close, tail open, tail close]; position 0 is [CLS].
    windows: (n_pairs, 2) the global word window [start, end) of each pair.
    """

    index: numpy.ndarray
    lengths: numpy.ndarray
    marker_pos: numpy.ndarray
    windows: numpy.ndarray

    @property
    def offsets(self) -> numpy.ndarray:
        """Start of each sequence in the flat index."""
        return (numpy.cumsum(self.lengths) - self.lengths).astype("int64")


def window_bounds(plan: PairPlan, unit_starts: numpy.ndarray, max_units: Optional[int]) -> numpy.ndarray:
    """(n_pairs, 2) global word window [start, end) around each pair.

    The window covers both entities and grows into the context on both sides,
    evenly while both sides have words, until its units (words or word pieces,
    `unit_starts[w]` is the first unit of word w, with a final entry for the
    end) reach `max_units`. A pair that does not fit keeps just its covering
    span (the encoder then truncates). None: the whole doc.
    """
    lo = numpy.minimum(plan.head[:, 0], plan.tail[:, 0])
    hi = numpy.maximum(plan.head[:, 1], plan.tail[:, 1])
    d0, d1 = plan.doc_bounds[:, 0], plan.doc_bounds[:, 1]
    if max_units is None:
        return numpy.stack([d0, d1], axis=1).astype("int64")
    u = unit_starts
    slack = numpy.maximum(max_units - (u[hi] - u[lo]), 0)
    left_avail, right_avail = u[lo] - u[d0], u[d1] - u[hi]
    left = numpy.minimum(left_avail, numpy.maximum(slack // 2, slack - right_avail))
    right = numpy.minimum(right_avail, slack - left)
    # first word starting at or after the left budget; last word ending within the right one
    start = numpy.searchsorted(u, u[lo] - left, side="left")
    end = numpy.searchsorted(u, u[hi] + right, side="right") - 1
    start = numpy.clip(start, d0, lo)
    end = numpy.clip(end, hi, d1)
    return numpy.stack([start, end], axis=1).astype("int64")


def build_layout(plan: PairPlan, unit_starts: numpy.ndarray, max_units: Optional[int]) -> Layout:
    """Window every pair and place its markers (see the module docstring).

    A marker that opens or closes an entity at word p goes before word p's
    first unit; at the same word, closing markers come before opening ones, so
    adjacent entities read `[E1] A [/E1] [E2] B [/E2]`.
    """
    n = plan.n_pairs
    n_units = int(unit_starts[-1])
    u = unit_starts
    windows = window_bounds(plan, u, max_units)
    w0, w1 = windows[:, 0], windows[:, 1]
    # insertion points of [head open, head close, tail open, tail close]
    points = numpy.stack([plan.head[:, 0], plan.head[:, 1], plan.tail[:, 0], plan.tail[:, 1]], axis=1)
    is_open = numpy.array([1, 0, 1, 0])
    # rank of each marker among the pair's four in text order (close first on ties, then head first)
    order_key = points * 4 + is_open[None, :] * 2 + numpy.array([0, 0, 1, 1])[None, :]
    ranks = numpy.argsort(numpy.argsort(order_key, axis=1, kind="stable"), axis=1)
    unit_points = u[points]
    first_unit = u[w0]
    n_window = u[w1] - first_unit
    lengths = (n_window + N_EXTRA).astype("int64")
    marker_pos = 1 + (unit_points - first_unit[:, None]) + ranks
    offsets = numpy.cumsum(lengths) - lengths
    index = numpy.full(int(lengths.sum()), n_units, dtype="int64")
    # units of each window, with the number of markers inserted before them
    total = int(n_window.sum())
    pair_of_unit = numpy.repeat(numpy.arange(n), n_window)
    within = numpy.arange(total) - numpy.repeat(numpy.cumsum(n_window) - n_window, n_window)
    units = first_unit[pair_of_unit] + within
    shift = (unit_points[pair_of_unit] <= units[:, None]).sum(axis=1)
    index[offsets[pair_of_unit] + 1 + within + shift] = units
    rows = n_units + numpy.asarray(plan.marker_rows, dtype="int64")
    index[offsets[:, None] + marker_pos] = rows
    index[offsets] = n_units + FIXED_MARKERS.index(CLS)
    index[offsets + lengths - 1] = n_units + FIXED_MARKERS.index(SEP)
    return Layout(index=index, lengths=lengths, marker_pos=marker_pos.astype("int64"), windows=windows)


def summary_spans(layout: Layout, pooling: str) -> numpy.ndarray:
    """Flat [start, end) rows of the summary parts of each pair, head then tail.

    cls: (n_pairs, 2) the [CLS] row. entity_start: (2 * n_pairs, 2) the head's
    then the tail's opening marker. entity_maxpool: (2 * n_pairs, 2) the head's
    then the tail's rows from opening to closing marker inclusive. Head rows
    come first (rows 0..n-1), tail rows next, so direction is kept.
    """
    offsets = layout.offsets
    pos = layout.marker_pos
    if pooling == "cls":
        return numpy.stack([offsets, offsets + 1], axis=1)
    if pooling == "entity_start":
        starts = numpy.concatenate([offsets + pos[:, 0], offsets + pos[:, 2]])
        return numpy.stack([starts, starts + 1], axis=1)
    if pooling == "entity_maxpool":
        starts = numpy.concatenate([offsets + pos[:, 0], offsets + pos[:, 2]])
        ends = numpy.concatenate([offsets + pos[:, 1], offsets + pos[:, 3]]) + 1
        return numpy.stack([starts, ends], axis=1)
    raise ValueError(f"Unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
