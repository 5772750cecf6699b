"""Encoders of marked pair sequences for the entity-marker models.

Both take `(docs, PairPlan)` and return `(H, layout)`: one hidden row per
position of every pair's marked sequence (flat, in `layout` order). The marker
model owns its encoder because the marked input differs per pair; the docs are
embedded (or word-piece tokenized) once per batch and each pair's sequence is
gathered from those rows and the marker rows by index, so all pairs of a batch
go through the contextual encoder as one batch.

- `marked_tok2vec`: CPU. spaCy's hash embeddings of the words, one learned
  vector per marker, then a contextual encoder over each marked sequence
  (spaCy's MaxoutWindowEncoder or TorchBiLSTMEncoder from the config).
- `marked_transformer`: a Hugging Face model loaded with spacy-transformers'
  loading code and HFShim (so it serializes with the pipeline); the marker
  tokens are added to its tokenizer and embedding matrix at initialize.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from thinc.api import Model, uniform_init
from thinc.types import Floats2d

from ..layers.torch_averages import average_torch_weights
from .layout import CLS, FIXED_MARKERS, N_EXTRA, PAD, SEP, Layout, PairPlan, build_layout

MarkedInputs = Tuple[List[Doc], PairPlan]
MarkedOutputs = Tuple[Floats2d, Layout]


def marked_tok2vec(
    embed: Model[List[Doc], List[Floats2d]],
    encode: Model[List[Floats2d], List[Floats2d]],
    max_length: Optional[int] = 128,
) -> Model[MarkedInputs, MarkedOutputs]:
    """Word hash embeddings + marker embeddings -> contextual encoder, per pair.

    max_length: most positions of a marked sequence (words + 6); the window
        around a pair is cut to fit (None: whole docs).
    """
    return average_torch_weights(Model(
        "marked_tok2vec",
        _tok2vec_forward,
        init=_tok2vec_init,
        layers=[embed, encode],
        refs={"embed": embed, "encode": encode},
        params={"M": None},
        dims={"nO": encode.maybe_get_dim("nO"), "nV": None},
        attrs={"max_length": max_length, "marker_vocab": None},
    ))


def _tok2vec_init(model: Model, X: Optional[MarkedInputs] = None, Y=None) -> None:
    vocab = model.attrs["marker_vocab"]
    if vocab is None:
        raise ValueError("marked_tok2vec needs attrs['marker_vocab'] before initialize.")
    embed, encode = model.get_ref("embed"), model.get_ref("encode")
    embed.initialize(X=X[0] if X is not None else None)
    encode.initialize()
    width = embed.get_dim("nO")
    model.set_dim("nV", len(vocab), force=True)
    model.set_dim("nO", encode.get_dim("nO"), force=True)
    model.set_param("M", uniform_init(model.ops, (len(vocab), width), lo=-0.1, hi=0.1))


def _tok2vec_forward(model: Model, inputs: MarkedInputs, is_train: bool) -> Tuple[MarkedOutputs, Callable]:
    docs, plan = inputs
    ops = model.ops
    embed, encode = model.get_ref("embed"), model.get_ref("encode")
    word_vecs, bp_embed = embed(docs, is_train)
    doc_lengths = ops.asarray1i([len(doc) for doc in docs])
    X = ops.flatten(word_vecs) if docs else ops.alloc2f(0, embed.get_dim("nO"))
    n_words = X.shape[0]
    max_length = model.attrs["max_length"]
    layout = build_layout(plan, numpy.arange(n_words + 1), None if max_length is None else max_length - N_EXTRA)
    M = model.get_param("M")
    table = ops.xp.concatenate([X, M])
    index = ops.asarray1i(layout.index)
    lengths = ops.asarray1i(layout.lengths)
    seqs, bp_seqs = encode(ops.unflatten(table[index], lengths), is_train)
    H = ops.flatten(seqs) if len(seqs) else ops.alloc2f(0, model.get_dim("nO"))

    def backprop(dH: Floats2d) -> MarkedInputs:
        d_seqs = bp_seqs(ops.unflatten(dH, lengths))
        d_table = ops.alloc2f(*table.shape)
        if len(d_seqs):
            ops.scatter_add(d_table, index, ops.flatten(d_seqs))
        model.inc_grad("M", d_table[n_words:])
        if docs:
            bp_embed(ops.unflatten(d_table[:n_words], doc_lengths))
        return inputs

    return (H, layout), backprop


def marked_transformer(
    name: str,
    max_length: int = 512,
    tokenizer_config: Dict[str, Any] = {},
    transformer_config: Dict[str, Any] = {},
    mixed_precision: bool = False,
    grad_scaler_config: Dict[str, Any] = {},
) -> Model[MarkedInputs, MarkedOutputs]:
    """A Hugging Face encoder over marked word-piece sequences.

    name: a Hugging Face hub id or a local model directory.
    max_length: most word pieces per marked sequence (capped by the model's
        position limit); the window around a pair is cut to fit.
    """
    from spacy_transformers.data_classes import HFObjects
    from spacy_transformers.layers.hf_shim import HFShim

    shim = HFShim(
        HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config)),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config),
    )
    return average_torch_weights(Model(
        "marked_transformer",
        _trf_forward,
        init=_trf_init,
        shims=[shim],
        dims={"nO": None},
        attrs={"name": name, "max_length": max_length, "marker_vocab": None},
    ))


def added_marker_tokens(vocab: Sequence[str]) -> List[str]:
    """The markers that become new tokenizer tokens ([CLS]/[SEP]/[PAD] map to the model's own)."""
    return [m for m in vocab if m not in (CLS, SEP, PAD)]


def _hf(model: Model):
    return model.shims[0]._hfmodel


def _trf_init(model: Model, X: Optional[MarkedInputs] = None, Y=None) -> None:
    from spacy_transformers.layers.transformer_model import huggingface_from_pretrained

    vocab = model.attrs["marker_vocab"]
    if vocab is None:
        raise ValueError("marked_transformer needs attrs['marker_vocab'] before initialize.")
    shim = model.shims[0]
    hf = shim._hfmodel
    if hf.transformer is None:
        hf = huggingface_from_pretrained(
            model.attrs["name"], dict(hf._init_tokenizer_config), dict(hf._init_transformer_config)
        )
        # markers are whole tokens, never split or lower-cased; their embeddings are new rows, trained
        hf.tokenizer.add_tokens(added_marker_tokens(vocab), special_tokens=True)
        hf.transformer.resize_token_embeddings(len(hf.tokenizer))
        shim._hfmodel = hf
        shim._model = hf.transformer
    model.set_dim("nO", hf.transformer.config.hidden_size, force=True)


def _position_limit(model: Model) -> int:
    hf = _hf(model)
    limit = int(model.attrs["max_length"])
    tok_max = getattr(hf.tokenizer, "model_max_length", None)
    if tok_max and tok_max < 100_000:
        limit = min(limit, int(tok_max))
    max_pos = getattr(hf.transformer.config, "max_position_embeddings", None)
    if max_pos:
        # RoBERTa-style models reserve padding_idx + 1 positions
        offset = 2 if getattr(hf.transformer.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        limit = min(limit, int(max_pos) - offset)
    return limit


def _word_pieces(tokenizer, docs: Sequence[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Word-piece ids of all docs (flat) and the first piece of every word (+ end)."""
    words = [[t.text for t in doc] for doc in docs if len(doc)]
    counts: List[numpy.ndarray] = []
    ids: List[numpy.ndarray] = []
    if words:
        enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        for i, doc_words in enumerate(words):
            word_ids = numpy.array([-1 if w is None else w for w in enc.word_ids(i)], dtype="int64")
            keep = word_ids >= 0
            ids.append(numpy.asarray(enc["input_ids"][i], dtype="int64")[keep])
            counts.append(numpy.bincount(word_ids[keep], minlength=len(doc_words)))
    flat_counts = numpy.concatenate(counts) if counts else numpy.zeros((0,), dtype="int64")
    starts = numpy.concatenate([[0], numpy.cumsum(flat_counts)]).astype("int64")
    return (numpy.concatenate(ids) if ids else numpy.zeros((0,), dtype="int64")), starts


def _trf_forward(model: Model, inputs: MarkedInputs, is_train: bool) -> Tuple[MarkedOutputs, Callable]:
    import torch
    from thinc.api import ArgsKwargs, torch2xp, xp2torch

    docs, plan = inputs
    ops = model.ops
    hf = _hf(model)
    tok = hf.tokenizer
    limit = _position_limit(model)
    piece_ids, unit_starts = _word_pieces(tok, docs)
    layout = build_layout(plan, unit_starts, limit - N_EXTRA)
    specials = {CLS: tok.cls_token_id, SEP: tok.sep_token_id, PAD: tok.pad_token_id}
    vocab = model.attrs["marker_vocab"]
    marker_ids = numpy.array(
        [specials[m] if m in specials else tok.convert_tokens_to_ids(m) for m in vocab], dtype="int64"
    )
    ids_flat = numpy.concatenate([piece_ids, marker_ids])[layout.index]
    # a pair whose own span is longer than the limit is truncated (its markers past the end read the last row)
    n = len(layout.lengths)
    kept_lengths = numpy.minimum(layout.lengths, limit)
    pos = numpy.arange(len(ids_flat)) - numpy.repeat(layout.offsets, layout.lengths)
    row = numpy.repeat(numpy.arange(n), layout.lengths)
    keep = pos < limit
    width = int(kept_lengths.max()) if n else 0
    input_ids = numpy.full((n, width), tok.pad_token_id, dtype="int64")
    input_ids[row[keep], pos[keep]] = ids_flat[keep]
    layout.marker_pos = numpy.minimum(layout.marker_pos, (kept_lengths - 1)[:, None])
    # typed markers do not say which entity is the head, so (A, B) and (B, A) give the same
    # sequence: each distinct sequence is encoded once (half the work for typed markers)
    unique_rows, seq_of_pair = _unique_rows(numpy.concatenate([input_ids, kept_lengths[:, None]], axis=1))
    unique_ids, unique_lengths = unique_rows[:, :-1], unique_rows[:, -1]
    n_unique = len(unique_ids)
    mask = (numpy.arange(width)[None, :] < unique_lengths[:, None]).astype("int64")
    device = next(hf.transformer.parameters()).device
    Xt = ArgsKwargs(
        args=(),
        kwargs={
            "input_ids": torch.as_tensor(unique_ids, device=device),
            "attention_mask": torch.as_tensor(mask, device=device),
        },
    )
    output, bp_torch = model.shims[0](Xt, is_train)
    hidden_t = output.last_hidden_state
    hidden = torch2xp(hidden_t)
    n_out = int(hidden.shape[-1])
    rows, cols = ops.asarray1i(seq_of_pair[row[keep]]), ops.asarray1i(pos[keep])
    flat_keep = ops.asarray1i(numpy.nonzero(keep)[0])
    H = ops.alloc2f(len(ids_flat), n_out)
    H[flat_keep] = hidden[rows, cols]

    def backprop(dH: Floats2d) -> MarkedInputs:
        # a sequence shared by several pairs gets the sum of their gradients
        d_hidden = ops.alloc2f(n_unique * width, n_out)
        ops.scatter_add(d_hidden, rows * width + cols, dH[flat_keep])
        d_hidden = d_hidden.reshape((n_unique, width, n_out))
        bp_torch(ArgsKwargs(args=(hidden_t,), kwargs={"grad_tensors": (xp2torch(d_hidden),)}))
        return inputs

    return (H, layout), backprop


def _unique_rows(matrix: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The distinct rows of an (n, k) int matrix, and each row's index among them."""
    if len(matrix) == 0:
        return matrix, numpy.zeros((0,), dtype="int64")
    unique, inverse = numpy.unique(matrix, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1).astype("int64")
