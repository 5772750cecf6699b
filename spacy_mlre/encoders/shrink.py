"""Make a trained pipeline's frozen encoder (spacy_mlre.FrozenEncoder.v1) smaller
after training (`python -m spacy_mlre encoder shrink`).

Two independent cuts, both exact for the text they are asked to keep, and two
speed-ups that are not exact:

- `round_weights`: store the weights as float16 / bfloat16 (half the bytes);
  the encoder still computes in float32, as with the layer's `weights_dtype`.
- `cut_vocabulary`: keep only the word pieces that some docs need. The
  embedding table is most of a multilingual encoder (multilingual-e5-small:
  96M of its 118M weights for 250k pieces), and a pipeline for a few languages
  uses a small part of it. Kept are the special tokens, the docs' pieces and
  every one-character piece, so that unseen words still split into known
  (shorter) pieces rather than the unknown token. A kept piece keeps its
  embedding row, and the docs' own text tokenizes into the same pieces:
  Unigram's best segmentation and WordPiece's longest match only ever pick
  among the kept pieces, so the docs' token vectors do not change.
- `quantize = "int8-smooth"`: SmoothQuant int8 Linear layers
  (ml/layers/smooth_quant.py), calibrated on docs spread over the data given.
  The vectors move a little and the relation model is not retrained on them,
  so the F1 before and after is the thing to measure.
- `compute = "bfloat16"`: the encoder's matrix products in bfloat16 (the
  layer's `compute_dtype`; the weights are unchanged). The same caveat.
"""
import json
import re
import tempfile
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model

from ..ml.layers.frozen_encoder import COMPUTE_DTYPES, FrozenHFShim, smooth_quantize_shim

ROUND_DTYPES = ("float16", "bfloat16")
BYTES_PER_WEIGHT = {"float32": 4, "float16": 2, "bfloat16": 2}
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
CALIBRATION_DOCS = 256  # SmoothQuant maxima: 64 docs gave the cosine of 300 (smooth_quant.py)
BATCH_DOCS = 256  # docs tokenized per call: one call per doc is slow, one for a corpus holds it all twice

Report = Dict[str, Any]


def _require_model(shim: FrozenHFShim, where: str = "") -> None:
    if shim._model is None or shim.tokenizer is None:
        raise ValueError(f"The FrozenEncoder.v1{where} is not initialized: shrink a trained (or initialized) pipeline.")


def _check_dtype(dtype: str) -> None:
    if dtype not in ROUND_DTYPES:
        raise ValueError(f"Weights can be rounded to {' or '.join(ROUND_DTYPES)}, not {dtype!r}.")


def _sizes(shim: FrozenHFShim, when: str) -> Report:
    """Pieces, embedding rows, weights' dtype and the bytes the embedding table takes when saved."""
    rows, width = shim._model.get_input_embeddings().weight.shape
    return {
        f"pieces_{when}": len(shim.tokenizer),
        f"rows_{when}": int(rows),
        f"weights_dtype_{when}": shim.weights_dtype,
        f"embedding_bytes_{when}": int(rows * width * BYTES_PER_WEIGHT[shim.weights_dtype]),
    }


# Precision -------------------------------------------------------------------


def round_weights(shim: FrozenHFShim, dtype: str) -> Report:
    """Round the encoder's floating weights to `dtype` in place and save them so.

    Rounded are exactly the tensors `FrozenHFShim.to_bytes` converts (the
    floating tensors of the state dict; an int8 model's packed Linear layers
    are stored as they are), so a saved and loaded pipeline computes what this
    one does. The model keeps computing in float32.
    """
    import torch

    _check_dtype(dtype)
    _require_model(shim)
    before = _sizes(shim, "before")
    target = getattr(torch, dtype)
    tensors = [v for v in shim._model.state_dict().values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if target == torch.float16:
        limit = torch.finfo(torch.float16).max
        if any(float(max(-lo, hi)) > limit for lo, hi in (t.aminmax() for t in tensors if t.numel())):
            raise ValueError("A weight of the encoder exceeds float16's range; use bfloat16.")
    with torch.no_grad():
        for tensor in tensors:  # state_dict's tensors share the parameters' storage
            tensor.copy_(tensor.to(target).to(tensor.dtype))
    shim.weights_dtype = dtype
    shim.cache.clear()
    return {**before, **_sizes(shim, "after")}


# Vocabulary ------------------------------------------------------------------


def cut_vocabulary(shim: FrozenHFShim, words_iter: Iterable[Any], pieces_from: str = "words") -> Report:
    """Keep only the word pieces of the special tokens, of `words_iter` (each
    item one doc's token texts, or its text when `pieces_from` is "text":
    tokenized as FrozenEncoder.v1 does with that setting) and the
    one-character pieces; renumber them in their old order, so that ids below
    the first dropped one (the special tokens at 0..3) stay put.

    Rewrites the fast tokenizer (same class, same special tokens), the
    embedding table and the config's vocab_size and special ids.
    """
    _require_model(shim)
    tokenizer = shim.tokenizer
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model_type = data["model"]["type"]
    if model_type not in _ONE_CHARACTER:
        raise ValueError(f"Cutting the vocabulary supports Unigram and WordPiece tokenizers, not {model_type}.")
    n_rows = shim._model.get_input_embeddings().weight.shape[0]
    n_pieces = len(tokenizer)
    if n_pieces > n_rows:
        raise ValueError(f"The tokenizer has {n_pieces} pieces but the embedding table only {n_rows} rows.")

    keep_set = _special_ids(tokenizer, data, shim._model.config) | _ONE_CHARACTER[model_type](data["model"])
    keep_set |= _doc_piece_ids(tokenizer, words_iter, pieces_from)
    outside = sorted(i for i in keep_set if not 0 <= i < n_pieces)
    if outside:  # the config's pad/bos/eos ids, which the tokenizer must number
        raise ValueError(f"Special ids {outside} lie outside the tokenizer's {n_pieces} pieces.")
    keep = sorted(keep_set)
    remap = {old: new for new, old in enumerate(keep)}
    pieces = tokenizer.convert_ids_to_tokens(keep)

    before = _sizes(shim, "before")
    _REWRITE_MODEL[model_type](data["model"], keep, remap)
    _remap_added_and_processor(data, remap)
    new_tokenizer = _rebuild_tokenizer(shim, data, remap)
    got = new_tokenizer.convert_ids_to_tokens(list(range(len(keep))))
    if len(new_tokenizer) != len(keep) or got != pieces:
        raise RuntimeError("The rebuilt tokenizer does not number the kept pieces in their old order.")
    _cut_embeddings(shim._model, keep, remap)
    shim.tokenizer = new_tokenizer
    shim._specials = None
    shim.cache.clear()
    return {**before, **_sizes(shim, "after")}


def _special_ids(tokenizer, data: Dict[str, Any], config) -> Set[int]:
    """Ids that must survive: added and special tokens, the model's unknown
    piece, the post-processor's and the config's special ids."""
    ids = {int(token["id"]) for token in data.get("added_tokens") or []}
    ids |= set(tokenizer.all_special_ids)
    ids |= set(_processor_ids(data.get("post_processor")))
    model = data["model"]
    if model.get("unk_id") is not None:
        ids.add(int(model["unk_id"]))
    if model.get("unk_token") in (model.get("vocab") or {}):
        ids.add(int(model["vocab"][model["unk_token"]]))
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(config, name, None) is not None:
            ids.add(int(getattr(config, name)))
    return ids


def _processor_ids(processor: Optional[Dict[str, Any]], remap: Optional[Dict[int, int]] = None) -> List[int]:
    """The post-processor's special ids (TemplateProcessing's special_tokens,
    Bert/Roberta's [token, id] cls and sep, nested Sequence processors),
    renumbered in place by `remap` when it is given."""
    if not processor:
        return []
    found: List[int] = []
    for inner in processor.get("processors") or []:
        found += _processor_ids(inner, remap)
    for special in (processor.get("special_tokens") or {}).values():
        found += [int(i) for i in special["ids"]]
        if remap is not None:
            special["ids"] = [remap[int(i)] for i in special["ids"]]
    for key in ("cls", "sep"):
        pair = processor.get(key)
        if isinstance(pair, list) and len(pair) == 2:
            found.append(int(pair[1]))
            if remap is not None:
                pair[1] = remap[int(pair[1])]
    return found


def _unigram_one_character(model: Dict[str, Any]) -> Set[int]:
    """Pieces of one character, with or without the Metaspace "▁" before it,
    the lowest-scoring piece (the unknown piece's score is the lowest score
    less a penalty: keeping it keeps that score) and byte-fallback pieces."""
    vocab = model["vocab"]
    ids = {i for i, (piece, _) in enumerate(vocab) if len(piece) == 1 or (len(piece) == 2 and piece[0] == "\u2581")}
    if vocab:
        ids.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
    if model.get("byte_fallback"):
        ids |= {i for i, (piece, _) in enumerate(vocab) if BYTE_PIECE.fullmatch(piece)}
    return ids


def _wordpiece_one_character(model: Dict[str, Any]) -> Set[int]:
    """Pieces of one character, word-initial or continuing ("##x")."""
    prefix = model.get("continuing_subword_prefix") or ""
    return {
        int(i) for piece, i in model["vocab"].items()
        if len(piece) == 1 or (prefix and piece.startswith(prefix) and len(piece) == len(prefix) + 1)
    }


def _rewrite_unigram(model: Dict[str, Any], keep: List[int], remap: Dict[int, int]) -> None:
    vocab = model["vocab"]
    model["vocab"] = [vocab[i] for i in keep if i < len(vocab)]
    if model.get("unk_id") is not None:
        model["unk_id"] = remap[int(model["unk_id"])]


def _rewrite_wordpiece(model: Dict[str, Any], keep: List[int], remap: Dict[int, int]) -> None:
    model["vocab"] = {piece: remap[int(i)] for piece, i in model["vocab"].items() if int(i) in remap}


_ONE_CHARACTER: Dict[str, Callable[[Dict[str, Any]], Set[int]]] = {
    "Unigram": _unigram_one_character,
    "WordPiece": _wordpiece_one_character,
}
_REWRITE_MODEL: Dict[str, Callable[[Dict[str, Any], List[int], Dict[int, int]], None]] = {
    "Unigram": _rewrite_unigram,
    "WordPiece": _rewrite_wordpiece,
}


def _doc_piece_ids(tokenizer, words_iter: Iterable[Any], pieces_from: str = "words") -> Set[int]:
    """Every piece id of the docs, tokenized as FrozenEncoder.v1's `doc_pieces` does."""
    ids: Set[int] = set()
    as_text = pieces_from == "text"
    items = (w if as_text else list(w) for w in words_iter if len(w))
    while True:
        batch = list(islice(items, BATCH_DOCS))
        if not batch:
            return ids
        enc = tokenizer(batch, is_split_into_words=not as_text, add_special_tokens=False, verbose=False)
        for piece_ids in enc["input_ids"]:
            ids.update(piece_ids)


def _remap_added_and_processor(data: Dict[str, Any], remap: Dict[int, int]) -> None:
    for token in data.get("added_tokens") or []:
        token["id"] = remap[int(token["id"])]
    _processor_ids(data.get("post_processor"), remap)
    padding = data.get("padding")
    if padding and padding.get("pad_id") is not None:
        padding["pad_id"] = remap[int(padding["pad_id"])]


def _rebuild_tokenizer(shim: FrozenHFShim, data: Dict[str, Any], remap: Dict[int, int]):
    """The fast tokenizer of `data`, with the old one's class, settings and special tokens.

    Saved, its tokenizer.json replaced and its ids in tokenizer_config.json /
    added_tokens.json renumbered, the slow tokenizer's files (vocab.txt,
    sentencepiece.bpe.model: the old vocabulary) deleted, and loaded as
    FrozenHFShim loads one.
    """
    from transformers import AutoTokenizer

    old = shim.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old.save_pretrained(tmp)
        for key, name in old.vocab_files_names.items():
            if key != "tokenizer_file" and (folder / name).exists():
                (folder / name).unlink()
        (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf8")
        config_path = folder / "tokenizer_config.json"
        if config_path.exists():
            config = json.loads(config_path.read_text(encoding="utf8"))
            if "added_tokens_decoder" in config:
                config["added_tokens_decoder"] = {
                    str(remap[int(i)]): token for i, token in config["added_tokens_decoder"].items()
                }
            config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf8")
        added_path = folder / "added_tokens.json"
        if added_path.exists():
            added = json.loads(added_path.read_text(encoding="utf8"))
            added_path.write_text(json.dumps({t: remap[int(i)] for t, i in added.items()}, ensure_ascii=False), encoding="utf8")
        new = AutoTokenizer.from_pretrained(tmp, **{"use_fast": True, **shim.cfg["tokenizer_config"]})
    if type(new) is not type(old):
        raise RuntimeError(f"The cut tokenizer loads as {type(new).__name__}, not {type(old).__name__}.")
    if new.special_tokens_map != old.special_tokens_map:
        raise RuntimeError("The cut tokenizer lost special tokens.")
    return new


def _cut_embeddings(transformer, keep: List[int], remap: Dict[int, int]) -> None:
    """The kept rows of the input embedding table, in order, and a config that says so."""
    import torch

    old = transformer.get_input_embeddings()
    padding_idx = remap.get(old.padding_idx) if old.padding_idx is not None else None
    device = old.weight.device
    new = torch.nn.Embedding(len(keep), old.embedding_dim, padding_idx=padding_idx, device=device)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.as_tensor(keep, dtype=torch.long, device=device)])
    new.requires_grad_(False)
    transformer.set_input_embeddings(new)
    config = transformer.config
    config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(config, name, None) is not None:
            setattr(config, name, remap[int(getattr(config, name))])


# Pipeline --------------------------------------------------------------------


def find_shims(nlp: Language) -> List[Tuple[str, Model, FrozenHFShim]]:
    """(component, model node, shim) of every FrozenEncoder.v1 in the pipeline,
    disabled components included (they are saved too); a shared shim once."""
    found: List[Tuple[str, Model, FrozenHFShim]] = []
    seen: Set[int] = set()
    for name, pipe in nlp.components:
        model = getattr(pipe, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, FrozenHFShim) and id(shim) not in seen:
                    seen.add(id(shim))
                    found.append((name, node, shim))
    return found


def spread(docs: Sequence[Doc], n: int = CALIBRATION_DOCS) -> List[Doc]:
    """At most n docs taken at even steps through `docs`, so that data of
    several languages or files is calibrated on all of them."""
    step = max(1, len(docs) // n)
    return list(docs[::step][:n])


def shrink_pipeline(
    nlp: Language,
    dtype: Optional[str] = None,
    vocab_docs: Optional[Iterable[Doc]] = None,
    quantize: Optional[str] = None,
    calibration_docs: Optional[Sequence[Doc]] = None,
    compute: Optional[str] = None,
) -> Dict[str, Report]:
    """Cut every frozen encoder's vocabulary to `vocab_docs` (when given),
    round its weights to `dtype` (when given), make its Linear layers
    SmoothQuant int8 calibrated on `calibration_docs` (quantize =
    "int8-smooth") and set the dtype it computes in (`compute`), in place.
    Returns a report per component holding an encoder."""
    if dtype is None and vocab_docs is None and quantize is None and compute is None:
        raise ValueError("Nothing to shrink: give a dtype, docs for the vocabulary, a quantization, a compute dtype, or several.")
    if compute is not None and compute not in COMPUTE_DTYPES:
        raise ValueError(f"compute can be {' or '.join(COMPUTE_DTYPES)}, not {compute!r}.")
    if quantize not in (None, "int8-smooth"):
        raise ValueError(f"quantize can be \"int8-smooth\", not {quantize!r}.")
    if quantize is not None and not calibration_docs:
        raise ValueError("quantize = \"int8-smooth\" needs calibration docs (the training data, for instance).")
    if dtype is not None:
        _check_dtype(dtype)  # before anything is cut
    found = find_shims(nlp)
    if not found:
        names = ", ".join(nlp.component_names) or "none"
        raise ValueError(f"The pipeline holds no FrozenEncoder.v1 (spacy_mlre.FrozenEncoder.v1); its components: {names}.")
    for name, _, shim in found:
        _require_model(shim, f" of component {name!r}")
    words = texts = None
    if vocab_docs is not None:
        vocab_docs = list(vocab_docs)
        words = [[token.text for token in doc] for doc in vocab_docs]
        texts = [doc.text for doc in vocab_docs]
        if not any(words):
            raise ValueError("The docs for the vocabulary hold no tokens: the encoder would keep only single characters.")
    reports: Dict[str, Report] = {}
    for name, node, shim in found:
        before = _sizes(shim, "before")
        if words is not None:
            pieces_from = node.attrs.get("pieces_from", "words")
            cut_vocabulary(shim, texts if pieces_from == "text" else words, pieces_from)
        if dtype is not None:
            round_weights(shim, dtype)
            if "weights_dtype" in node.attrs:  # saved with the model: says how its weights are stored
                node.attrs["weights_dtype"] = dtype
        if quantize is not None:
            smooth_quantize_shim(node, list(calibration_docs or []))
            node.attrs["quantize"] = quantize
        if compute is not None:
            node.attrs["compute_dtype"] = compute
            shim.cache.clear()
        key = name if name not in reports else f"{name} #{len(reports) + 1}"  # two encoders in one component
        reports[key] = {**before, **_sizes(shim, "after"), "quantize": shim.quantize,
                        "compute_dtype": node.attrs.get("compute_dtype", "float32")}
    return reports
