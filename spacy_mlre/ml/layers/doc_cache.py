"""A bounded cache of per-doc arrays, keyed by the doc's tokens.

Used by the frozen encoder (frozen_encoder.py): a frozen encoder's output for a
doc never changes, so it is computed once and read back in later epochs.

Key: a 128-bit BLAKE2 digest of the doc's text and every token's character
offset and length, i.e. of the token texts and the whitespace after each (two
docs with the same text but different tokens get different keys; the entities,
language and annotations do not enter).

Bound: `capacity` rows (tokens) in all. Two kinds of entries, so that neither
training nor streaming prediction can grow memory past the bound or throw the
training set out:

- stored while training (`is_train=True`): kept until `clear()`; a training
  miss may evict prediction entries (oldest first) to make room, never another
  training entry. When the training docs alone exceed the bound, the first
  ones to arrive stay cached and the rest are encoded again every epoch (a
  fixed subset gets hits on every pass; evicting in least-recently-used order
  would get none on a cyclic pass over the data).
- stored at prediction: only in the room the training entries leave, least
  recently used evicted first, so streaming a corpus keeps at most `capacity`
  rows and the cache holds the most recent docs.
"""
import hashlib
from collections import OrderedDict
from typing import Any, Dict, Optional

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc


def doc_key(doc: Doc) -> bytes:
    """The cache key of a doc: its text, token offsets and token lengths."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(doc.text.encode("utf8"))
    digest.update(numpy.ascontiguousarray(doc.to_array([IDX, LENGTH]), dtype="int64").tobytes())
    return digest.digest()


class DocCache:
    """Per-doc arrays (n_tokens rows each), at most `capacity` rows in all
    (0 switches the cache off)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._train: Dict[bytes, Any] = {}
        self._predict: "OrderedDict[bytes, Any]" = OrderedDict()
        self.n_rows = 0
        self.predict_rows = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._train) + len(self._predict)

    def __contains__(self, key: bytes) -> bool:
        return key in self._train or key in self._predict

    def get(self, key: bytes) -> Optional[Any]:
        value = self._train.get(key)
        if value is None:
            value = self._predict.get(key)
            if value is not None:
                self._predict.move_to_end(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: bytes, value: Any, is_train: bool) -> bool:
        """Store `value` (rows = its first dimension) if the bound allows; True if stored."""
        rows = int(value.shape[0])
        if self.capacity <= 0 or rows > self.capacity:
            return False
        if key in self._train:
            return True
        if key in self._predict:
            if not is_train:
                self._predict.move_to_end(key)
                return True
            # promote: a training doc seen at prediction first
            old_rows = int(self._predict.pop(key).shape[0])
            self.n_rows -= old_rows
            self.predict_rows -= old_rows
        if self.capacity - self.n_rows + self.predict_rows < rows:
            return False
        while self.capacity - self.n_rows < rows:
            _, old = self._predict.popitem(last=False)
            self.n_rows -= int(old.shape[0])
            self.predict_rows -= int(old.shape[0])
        if is_train:
            self._train[key] = value
        else:
            self._predict[key] = value
            self.predict_rows += rows
        self.n_rows += rows
        return True

    def clear(self) -> None:
        self._train.clear()
        self._predict.clear()
        self.n_rows = self.predict_rows = 0
        self.hits = self.misses = 0

    def stats(self) -> Dict[str, int]:
        return {
            "docs": len(self),
            "train_docs": len(self._train),
            "rows": self.n_rows,
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
        }
