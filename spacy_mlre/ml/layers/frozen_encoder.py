"""spacy_mlre.FrozenEncoder.v1: token vectors from a frozen Hugging Face encoder.

A `Model[List[Doc], List[Floats2d]]` for the `tok2vec` slot of every relation
architecture (PairClassifier, KernelMatrix, MERE; AMNRE's `embed`): one row per
spaCy token, `nO` = the encoder's hidden size (set at initialize; `width`, when
given, is checked against it so that other blocks can read it with ${...}).

What a token's vector is. With `pieces_from = "words"` the doc's tokens go to
the fast tokenizer as pre-split words (`is_split_into_words`), so every word
piece belongs to one token (`word_ids`); with "text" the doc's text goes to it
as written, and a piece belongs to every token its characters overlap (Chinese
中国的 is one piece, then pooled into both 中国 and 的). The pieces are cut into windows of at most `window` pieces
(default: as many as the model's positions allow after its special tokens),
the next window starting `stride` pieces later (default 3/4 of the window) and
the last one ending at the doc's last piece; each window is wrapped in the
tokenizer's own special tokens ([CLS] ... [SEP], <s> ... </s>) and encoded on
its own. A piece's vector is the mean of the last `n_layers` hidden layers (of the
layers up to `last_layer` when it is set: the layers above it are dropped at
initialize, so they are neither computed nor saved),
averaged over the windows that hold it; a token's vector is the mean of its
pieces. A token without pieces (whitespace, characters the tokenizer drops)
takes the vector of the nearest piece after it (the next token's first piece),
or of the doc's last piece at the end of the doc; a doc without any piece gets
zeros.

Frozen. The encoder runs in eval mode under torch.inference_mode, its
parameters have requires_grad off, and backprop returns the docs and passes
nothing on: no optimizer ever sees its weights. Its output for a doc therefore
never changes, and it is cached (layers/doc_cache.py: key = the doc's token
texts and whitespace; bound = `cache_size` tokens): while training every doc
is encoded once, not once per epoch, as long as the training set fits the
bound; at prediction docs are cached only in the room that the training docs
leave, least recently used evicted first, so streaming a corpus holds at most
`cache_size` tokens' vectors (width x 4 bytes each: 100,000 tokens of a
384-wide encoder are 154 MB). Docs that miss the cache are encoded together,
their windows sorted by length and grouped so that a forward pass holds at most
`max_batch_items` padded pieces. Torch's thread count is the caller's
(torch.set_num_threads / OMP_NUM_THREADS).

Why not spacy-transformers' TransformerModel. It would give loading and
saving, but its forward builds the autograd graph while training, keeps only
`last_hidden_state` (the layer mean needs all hidden states: see
trf_hidden.py), aligns by character offsets of the doc's text, pools after
the pipe, and caches nothing; and it would make spacy-transformers a
requirement of a model that needs only `transformers`. This module loads with
`AutoTokenizer` / `AutoModel` (`name`: a local folder or a hub id) and
serializes like spacy-transformers' HFShim: the model's config, the tokenizer's
files and the weights go into the pipeline's model bytes, so a saved pipeline
loads offline without the original folder.

Precision. `weights_dtype = "float16"` (or "bfloat16") rounds the weights to
that type at initialize and stores them so (half the bytes: multilingual-e5-small
is ~470 MB in float32, ~235 MB in float16, most of it the 250k-piece embedding
table); the encoder still computes in float32. Rounding at initialize, not at
saving, means training, the cache and the saved pipeline all see the same
weights, so a loaded pipeline reproduces its training-time vectors exactly.
The cost is the rounding itself (relative error about 5e-4 per weight for
float16, 4e-3 for bfloat16), which moves the token vectors slightly from the
original model's.

Speed. `quantize = "int8"` replaces the encoder's Linear layers by torch's
dynamically quantized int8 ones at initialize (weights int8 per tensor,
activations quantized per batch): on the 2-core AVX2 CPU (no AVX-512) of
the first measurements the float32 matrix products are three quarters of
the encoder's time and run near the cores' peak, and int8 runs the encoder about 1.4x faster. The vectors move (mean
cosine 0.93 to float32), which costs F1; `quantize = "int8-smooth"` adds
SmoothQuant scales (smooth_quant.py), calibrated at initialize on the docs it
is given (spaCy passes a sample of about 10 training docs), and moves them
much less (cosine 0.99) at the same speed. The quantized weights are what the
pipeline saves (a quarter of the Linear bytes), so a loaded pipeline computes
exactly what training saw; the embedding tables stay in `weights_dtype`. Small
forward passes are faster on a CPU than big ones (the activations stay in
cache), hence `max_batch_items` of 512.
"""
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy
import srsly
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.shims import Shim
from thinc.types import Floats2d

from .doc_cache import DocCache, doc_key

DTYPES = ("float32", "float16", "bfloat16")
COMPUTE_DTYPES = ("float32", "bfloat16")
SMOOTH = "int8-smooth"
QUANTIZE = (None, "int8", SMOOTH)
PIECES_FROM = ("words", "text")


@registry.architectures("spacy_mlre.FrozenEncoder.v1")
def build_frozen_encoder(
    name: str,
    n_layers: int = 4,
    last_layer: Optional[int] = None,
    window: Optional[int] = None,
    stride: Optional[int] = None,
    cache_size: int = 100_000,
    max_batch_items: int = 512,
    weights_dtype: str = "float32",
    quantize: Optional[str] = None,
    width: Optional[int] = None,
    tokenizer_config: Dict[str, Any] = {},
    transformer_config: Dict[str, Any] = {},
    pieces_from: str = "words",
    compute_dtype: str = "float32",
) -> Model[List[Doc], List[Floats2d]]:
    """Token vectors from a frozen Hugging Face encoder (never trained).

    name: a local model folder or a Hugging Face hub id (loaded at
        initialize; a saved pipeline carries the weights and no longer needs it).
    n_layers: average the last n hidden layers (1: the last layer only).
    last_layer: use the encoder up to this layer and drop the ones above it
        (null: all). Middle layers of multilingual-e5-small carry relations
        better than its top ones, and a shorter encoder is faster.
    window: most word pieces per window, special tokens excluded (null: as
        many as the model's positions allow); stride: pieces between window
        starts (null: 3/4 of the window). Overlapping pieces are averaged.
    cache_size: most tokens whose vectors are kept (0: no cache).
    max_batch_items: most padded pieces per forward pass.
    weights_dtype: "float32", or "float16" / "bfloat16" to round the weights
        at initialize and store them at half the size.
    quantize: null, or "int8" for torch's dynamic int8 Linear layers (CPU
        only; faster and smaller, the vectors move), or "int8-smooth" for
        the same with SmoothQuant scales calibrated on the docs given to
        initialize (smooth_quant.py: the vectors move much less).
    width: the encoder's hidden size if known, checked at initialize (null:
        taken from the encoder).
    tokenizer_config, transformer_config: keyword arguments of
        AutoTokenizer.from_pretrained / AutoModel.from_pretrained (e.g.
        {"add_prefix_space": true} for byte-level BPE tokenizers).
    pieces_from: "words" tokenizes each spaCy token as a word (a SentencePiece
        tokenizer then puts a word boundary before every token), "text" the
        doc's text as written, each piece pooled into every token its
        characters overlap. For scripts written without spaces (Chinese) only
        "text" gives the encoder input like its pretraining text: "words"
        splits 中国的 into ▁ 中国 ▁ 的.
    compute_dtype: "float32", or "bfloat16" to run the encoder's matrix
        products in bfloat16 (torch autocast; layer norms and softmax stay
        float32). About twice the speed where the CPU has bfloat16 dot
        products (AVX512-BF16, AMX) or on a GPU, and slower where it has not;
        the vectors move slightly. The weights stay as they are, so `encoder
        shrink --compute bfloat16` can set it on a trained pipeline.
    """
    if n_layers < 1:
        raise ValueError(f"FrozenEncoder.v1 n_layers must be at least 1, got {n_layers}.")
    if weights_dtype not in DTYPES:
        raise ValueError(f"FrozenEncoder.v1 weights_dtype must be one of {', '.join(DTYPES)}, got {weights_dtype!r}.")
    if quantize not in QUANTIZE:
        raise ValueError(f"FrozenEncoder.v1 quantize must be null, \"int8\" or \"int8-smooth\", got {quantize!r}.")
    if last_layer is not None and last_layer < n_layers:
        raise ValueError(
            f"FrozenEncoder.v1 averages n_layers = {n_layers} layers up to last_layer = {last_layer}: "
            "last_layer must be at least n_layers."
        )
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"FrozenEncoder.v1 compute_dtype must be \"float32\" or \"bfloat16\", got {compute_dtype!r}.")
    if pieces_from not in PIECES_FROM:
        raise ValueError(f"FrozenEncoder.v1 pieces_from must be \"words\" or \"text\", got {pieces_from!r}.")
    if window is not None and window < 1:
        raise ValueError(f"FrozenEncoder.v1 window must be positive or null, got {window}.")
    if stride is not None and (stride < 1 or (window is not None and stride > window)):
        raise ValueError(f"FrozenEncoder.v1 stride must be between 1 and the window, got {stride}.")
    shim = FrozenHFShim(
        cache_size=cache_size,
        max_batch_items=max_batch_items,
        tokenizer_config=dict(tokenizer_config),
        transformer_config=dict(transformer_config),
    )
    return Model(
        "frozen_encoder",
        _forward,
        init=_init,
        shims=[shim],
        dims={"nO": width},
        attrs={
            "name": str(name),
            "n_layers": n_layers,
            "last_layer": last_layer,
            "window": window,
            "stride": stride,
            "weights_dtype": weights_dtype,
            "quantize": quantize,
            "width": width,
            "pieces_from": pieces_from,
            "compute_dtype": compute_dtype,
        },
    )


def get_shim(model: Model) -> "FrozenHFShim":
    """The shim holding the encoder, its tokenizer and the cache of a FrozenEncoder.v1 model."""
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, FrozenHFShim):
                return shim
    raise ValueError(f"{model.name} holds no FrozenEncoder.v1.")


def _import_transformers(*names: str) -> Tuple[Any, ...]:
    """Hugging Face transformers is an optional dependency of spacy-mlre (the
    tok2vec models do without it): say how to install it, rather than fail with
    a bare ModuleNotFoundError from inside thinc's deserialisation."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "This pipeline's encoder (spacy_mlre.FrozenEncoder.v1) needs the transformers "
            "package, which is not installed. Install it with: "
            "pip install 'spacy-mlre[transformers]'"
        ) from err
    return tuple(getattr(transformers, name) for name in names)


class FrozenHFShim(Shim):
    """A Hugging Face encoder and its fast tokenizer, used for inference only.

    `_model` is the torch module (None until initialize or from_bytes),
    `tokenizer` the fast tokenizer, `cache` the per-doc output cache. The
    cache and the batching bound are runtime settings from the config; they
    are not serialized.
    """

    def __init__(
        self,
        cache_size: int = 100_000,
        max_batch_items: int = 4096,
        tokenizer_config: Optional[Dict[str, Any]] = None,
        transformer_config: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(None, config={"tokenizer_config": dict(tokenizer_config or {}),
                                       "transformer_config": dict(transformer_config or {})})
        self.tokenizer = None
        self.weights_dtype = "float32"
        self.quantize: Optional[str] = None
        self.cache = DocCache(cache_size)
        self.max_batch_items = int(max_batch_items)
        self._specials: Optional[Tuple[List[int], List[int]]] = None

    # Loading -----------------------------------------------------------

    def load(self, name: str, weights_dtype: str, quantize: Optional[str] = None, last_layer: Optional[int] = None) -> None:
        AutoModel, AutoTokenizer = _import_transformers("AutoModel", "AutoTokenizer")

        tokenizer = AutoTokenizer.from_pretrained(name, **{"use_fast": True, **self.cfg["tokenizer_config"]})
        transformer = AutoModel.from_pretrained(name, **self.cfg["transformer_config"])
        if last_layer is not None:
            truncate_layers(transformer, last_layer, name)
        # SmoothQuant needs calibration docs: _init applies it after loading
        self._set(tokenizer, transformer, weights_dtype, round_weights=True, quantize=None if quantize == SMOOTH else quantize)

    def _set(
        self, tokenizer, transformer, weights_dtype: str, round_weights: bool, quantize: Optional[str] = None, state=None
    ) -> None:
        """Install the encoder: round (initialize) or load (`state`, from bytes) its weights, then quantize."""
        import torch
        from thinc.api import get_torch_default_device

        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"FrozenEncoder.v1 needs a fast (Rust) tokenizer for word alignment; {type(tokenizer).__name__} is not."
            )
        transformer = transformer.float()
        if round_weights and weights_dtype != "float32":
            dtype = getattr(torch, weights_dtype)
            with torch.no_grad():
                for tensor in list(transformer.parameters()) + list(transformer.buffers()):
                    if tensor.is_floating_point():
                        if dtype == torch.float16 and tensor.abs().max() > torch.finfo(torch.float16).max:
                            raise ValueError("FrozenEncoder.v1: a weight exceeds float16's range; use bfloat16.")
                        tensor.copy_(tensor.to(dtype).float())
        transformer.eval()
        transformer.requires_grad_(False)
        if quantize == "int8":
            transformer = quantize_int8(transformer)
        elif quantize == SMOOTH:
            if state is None:
                raise ValueError("FrozenEncoder.v1: int8-smooth is calibrated in smooth_quantize_shim, or loaded with its state.")
            from .smooth_quant import smooth_quantize

            transformer = smooth_quantize(transformer)  # the structure; the scales come with the state
        if state is not None:
            transformer.load_state_dict(state)
        self._model = transformer.to(get_torch_default_device())
        self.tokenizer = tokenizer
        self.weights_dtype = weights_dtype
        self.quantize = quantize
        self._specials = None
        self.cache.clear()

    @property
    def config(self):
        return self._model.config

    def special_tokens(self) -> Tuple[List[int], List[int]]:
        """The ids the tokenizer puts before and after a sequence."""
        if self._specials is None:
            enc = self.tokenizer([["x"]], is_split_into_words=True, add_special_tokens=True)
            ids, words = enc["input_ids"][0], enc.word_ids(0)
            inner = [i for i, w in enumerate(words) if w is not None]
            first, last = (inner[0], inner[-1]) if inner else (len(ids), len(ids) - 1)
            self._specials = (list(ids[:first]), list(ids[last + 1 :]))
        return self._specials

    def max_pieces(self) -> int:
        """Most word pieces of a doc per window: the model's positions less its special tokens."""
        config = self._model.config
        limit = 1 << 30
        max_pos = getattr(config, "max_position_embeddings", None)
        if max_pos:
            # RoBERTa-style position ids start after the padding index
            offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
            limit = int(max_pos) - int(offset or 0)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max and tok_max < 1_000_000:
            limit = min(limit, int(tok_max))
        prefix, suffix = self.special_tokens()
        return limit - len(prefix) - len(suffix)

    # Thinc's shim interface ------------------------------------------------

    def __call__(self, inputs, is_train: bool):
        raise NotImplementedError("FrozenEncoder.v1 runs its encoder through its own forward.")

    def finish_update(self, optimizer) -> None:
        """Nothing to update: the encoder is frozen."""

    def to_device(self, device_type: str, device_id: int) -> None:
        import torch

        if self.quantize and device_type != "cpu":
            raise ValueError(f"FrozenEncoder.v1: quantize = \"{self.quantize}\" runs on CPU only; set quantize = null for a GPU.")
        if self._model is not None:
            device = torch.device("cpu") if device_type == "cpu" else torch.device(f"cuda:{device_id}")
            self._model.to(device)
        self.cache.clear()

    def to_bytes(self) -> bytes:
        import torch

        if self._model is None:
            return srsly.msgpack_dumps({})
        with tempfile.TemporaryDirectory() as tmp:
            self.tokenizer.save_pretrained(tmp)
            files = {path.name: path.read_bytes() for path in Path(tmp).iterdir() if path.is_file()}
        dtype = getattr(torch, self.weights_dtype)
        state = _map_state(self._model.state_dict(), lambda v: v.to(dtype).cpu())
        buffer = io.BytesIO()
        torch.save(state, buffer)
        msg = {
            "config": self._model.config.to_dict(),
            "tokenizer": files,
            "weights": buffer.getvalue(),
            "weights_dtype": self.weights_dtype,
            "quantize": self.quantize,
        }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "FrozenHFShim":
        import torch

        AutoConfig, AutoModel, AutoTokenizer = _import_transformers("AutoConfig", "AutoModel", "AutoTokenizer")
        msg = srsly.msgpack_loads(bytes_data)
        if not msg:
            return self
        with tempfile.TemporaryDirectory() as tmp:
            for file_name, data in msg["tokenizer"].items():
                Path(tmp, file_name).write_bytes(data)
            tokenizer = AutoTokenizer.from_pretrained(tmp, **{"use_fast": True, **self.cfg["tokenizer_config"]})
            srsly.write_json(Path(tmp) / "config.json", msg["config"])
            config = AutoConfig.from_pretrained(tmp)
        transformer = AutoModel.from_config(config)
        quantize = msg.get("quantize")
        # quantized Linear layers are saved as packed parameters, which
        # weights_only loading refuses; these bytes are the pipeline's own
        with warnings.catch_warnings():
            # torch's own deprecation notes on how it stores quantized tensors, not the user's to act on
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel")
            state = torch.load(io.BytesIO(msg["weights"]), map_location="cpu", weights_only=not quantize)
        state = _map_state(state, lambda v: v.float())
        self._set(tokenizer, transformer, msg["weights_dtype"], round_weights=False, quantize=quantize, state=state)
        return self


def truncate_layers(transformer, last_layer: int, name: str) -> None:
    """Keep the encoder's layers 1..last_layer (in place); its config says so,
    so a saved pipeline rebuilds the shorter model."""
    layers = getattr(getattr(transformer, "encoder", None), "layer", None)
    n_layers = int(getattr(transformer.config, "num_hidden_layers", 0) or 0)
    if layers is None or len(layers) != n_layers:
        raise ValueError(
            f"FrozenEncoder.v1 last_layer needs a BERT-style encoder (model.encoder.layer); {name} "
            f"({type(transformer).__name__}) is not one: set last_layer = null."
        )
    if not 1 <= last_layer <= n_layers:
        raise ValueError(f"FrozenEncoder.v1 last_layer = {last_layer}, but {name} has layers 1 to {n_layers}.")
    transformer.encoder.layer = layers[:last_layer]
    transformer.config.num_hidden_layers = last_layer


def _map_state(state, convert: Callable):
    """The state dict with `convert` applied to its floating-point tensors,
    keeping its `_metadata`: quantized modules read their format version there."""
    import torch

    out = type(state)((k, convert(v) if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in state.items())
    if hasattr(state, "_metadata"):
        out._metadata = state._metadata
    return out


def smooth_quantize_shim(model: Model, docs: Sequence[Doc]) -> None:
    """Make the encoder's Linear layers SmoothQuant int8, calibrated on `docs`
    (smooth_quant.py), and empty the cache: the vectors change."""
    import torch

    from .smooth_quant import encoder_linears, input_absmax, smooth_quantize

    shim = get_shim(model)
    if shim.quantize is not None:
        raise ValueError(f"FrozenEncoder.v1: the encoder is already quantized ({shim.quantize}).")
    docs = [doc for doc in docs if len(doc)]
    if not docs:
        raise ValueError(
            "FrozenEncoder.v1 quantize = \"int8-smooth\" calibrates on the docs given to initialize, and got none: "
            "initialize the pipeline with training data (spacy train / nlp.initialize(get_examples))."
        )
    transformer = shim._model
    absmax = input_absmax(transformer, encoder_linears(transformer), lambda: encode_docs(model, docs))
    smooth_quantize(transformer, absmax, scale_dtype=getattr(torch, shim.weights_dtype))
    shim.quantize = SMOOTH
    shim.cache.clear()


def quantize_int8(transformer):
    """The encoder with torch's dynamic int8 Linear layers (in place)."""
    import torch

    with warnings.catch_warnings():
        # torch >= 2.10 points to torchao for new code; the eager API still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(transformer, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


# Model ------------------------------------------------------------------


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    shim = get_shim(model)
    if shim._model is None:
        shim.load(model.attrs["name"], model.attrs["weights_dtype"], model.attrs.get("quantize"), model.attrs.get("last_layer"))
    config = shim.config
    hidden = int(config.hidden_size)
    width = model.attrs["width"]
    if width is not None and width != hidden:
        raise ValueError(
            f"FrozenEncoder.v1 has width = {width}, but {model.attrs['name']} is {hidden} wide: "
            f"set width = {hidden} (or null)."
        )
    n_available = int(getattr(config, "num_hidden_layers", 0) or 0)
    if n_available and model.attrs["n_layers"] > n_available:
        raise ValueError(
            f"FrozenEncoder.v1 averages the last n_layers = {model.attrs['n_layers']} layers, but "
            f"{model.attrs['name']} has {n_available}."
        )
    if shim.max_pieces() < 1:
        raise ValueError(f"FrozenEncoder.v1: {model.attrs['name']} has no room for word pieces in a window.")
    model.set_dim("nO", hidden, force=True)
    if model.attrs.get("quantize") == SMOOTH and shim.quantize != SMOOTH:
        smooth_quantize_shim(model, X or [])
    shim.cache.clear()


def window_bounds(n_pieces: int, size: int, stride: int) -> List[Tuple[int, int]]:
    """(start, end) of the windows over `n_pieces` pieces: every `stride`
    pieces, the last ending at the last piece; one window when they fit."""
    if n_pieces <= size:
        return [(0, n_pieces)]
    starts = list(range(0, n_pieces - size, stride)) + [n_pieces - size]
    return [(s, s + size) for s in starts]


def _window_size(model: Model, shim: FrozenHFShim) -> Tuple[int, int]:
    limit = shim.max_pieces()
    size = min(model.attrs["window"] or limit, limit)
    stride = model.attrs["stride"] or max(1, (size * 3) // 4)
    return size, min(stride, size)


class DocPieces(NamedTuple):
    """A doc's word pieces and which tokens each one is pooled into: piece
    `piece_idx[k]` belongs to token `token_idx[k]` (sorted by token); a token
    that owns no piece takes piece `next_piece[token]`."""

    ids: numpy.ndarray
    piece_idx: numpy.ndarray
    token_idx: numpy.ndarray
    next_piece: numpy.ndarray


def doc_pieces(tokenizer: Any, docs: Sequence[Doc], pieces_from: str = "words") -> List[DocPieces]:
    """The word pieces of each doc, tokenized as FrozenEncoder.v1 does (see `pieces_from`)."""
    if pieces_from == "text":
        return _text_pieces(tokenizer, docs)
    return _word_pieces(tokenizer, docs)


def _word_pieces(tokenizer: Any, docs: Sequence[Doc]) -> List[DocPieces]:
    """Each token tokenized as a word: every piece belongs to one token."""
    words = [[token.text for token in doc] for doc in docs]
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
    result = []
    for i, doc in enumerate(docs):
        keep = _doc_piece_mask(enc, i)
        ids = numpy.asarray(enc["input_ids"][i], dtype="int64")[keep]
        owners = numpy.asarray([w for w in enc.word_ids(i) if w is not None], dtype="int64").reshape(-1)
        if (numpy.diff(owners) < 0).any():
            raise ValueError("FrozenEncoder.v1: the tokenizer returned word pieces out of word order.")
        next_piece = numpy.searchsorted(owners, numpy.arange(len(doc)), side="left")
        result.append(DocPieces(ids, numpy.arange(len(ids)), owners, next_piece))
    return result


def _doc_piece_mask(enc: Any, i: int) -> numpy.ndarray:
    """The pieces of sequence i that belong to the doc: all but the special
    tokens that some tokenizers add even with add_special_tokens=False."""
    return numpy.array([w is not None for w in enc.word_ids(i)], dtype=bool)


def _text_pieces(tokenizer: Any, docs: Sequence[Doc]) -> List[DocPieces]:
    """The doc's text tokenized as written; a piece belongs to every token whose
    characters (trailing whitespace excluded) its character span overlaps."""
    enc = tokenizer([doc.text for doc in docs], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    result = []
    for i, doc in enumerate(docs):
        ids = numpy.asarray(enc["input_ids"][i], dtype="int64")
        offsets = numpy.asarray(enc["offset_mapping"][i], dtype="int64").reshape(-1, 2)
        if len(offsets) != len(ids):
            raise ValueError("FrozenEncoder.v1 pieces_from = \"text\" needs a fast tokenizer with offsets.")
        keep = _doc_piece_mask(enc, i)
        ids, offsets = ids[keep], offsets[keep]
        starts, lengths = doc.to_array([IDX, LENGTH]).astype("int64").reshape(-1, 2).T
        ends = starts + lengths
        first = numpy.searchsorted(ends, offsets[:, 0], side="right")  # first token ending after the piece starts
        last = numpy.searchsorted(starts, offsets[:, 1], side="left") - 1  # last token starting before it ends
        n_owned = numpy.where(offsets[:, 1] > offsets[:, 0], numpy.maximum(last - first + 1, 0), 0)
        piece_idx = numpy.repeat(numpy.arange(len(ids)), n_owned)
        ramp = numpy.arange(len(piece_idx)) - numpy.repeat(numpy.cumsum(n_owned) - n_owned, n_owned)
        token_idx = numpy.repeat(first, n_owned) + ramp
        order = numpy.argsort(token_idx, kind="stable")
        next_piece = numpy.searchsorted(offsets[:, 1], starts, side="right")  # first piece ending after the token starts
        result.append(DocPieces(ids, piece_idx[order], token_idx[order], next_piece))
    return result


def _encode_windows(model: Model, shim: FrozenHFShim, windows: List[numpy.ndarray]) -> List[numpy.ndarray]:
    """Mean of the last n_layers hidden layers at the doc pieces of each window
    (special tokens dropped), in the windows' order; batched by length."""
    import torch

    prefix, suffix = shim.special_tokens()
    n_prefix = len(prefix)
    n_layers = model.attrs["n_layers"]
    pad_id = shim.tokenizer.pad_token_id if shim.tokenizer.pad_token_id is not None else 0
    device = next(shim._model.parameters()).device
    bf16 = model.attrs.get("compute_dtype", "float32") == "bfloat16"
    lengths = numpy.array([len(w) for w in windows], dtype="int64") + n_prefix + len(suffix)
    order = numpy.argsort(-lengths, kind="stable")
    outputs: List[Optional[numpy.ndarray]] = [None] * len(windows)
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        n = max(1, shim.max_batch_items // max(longest, 1))
        batch = order[i : i + n]
        i += len(batch)
        input_ids = numpy.full((len(batch), longest), pad_id, dtype="int64")
        mask = numpy.zeros((len(batch), longest), dtype="int64")
        for row, w in enumerate(batch):
            seq = numpy.concatenate([prefix, windows[w], suffix]).astype("int64")
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = shim._model(
                input_ids=torch.as_tensor(input_ids, device=device),
                attention_mask=torch.as_tensor(mask, device=device),
                output_hidden_states=True,
                return_dict=True,
            )
            hidden = out.hidden_states[-n_layers:]
            mean = hidden[0] if n_layers == 1 else torch.stack(hidden).mean(dim=0)
            mean = mean.float().cpu().numpy()
        for row, w in enumerate(batch):
            outputs[w] = mean[row, n_prefix : n_prefix + len(windows[w])]
    return outputs  # type: ignore[return-value]


def encode_docs(model: Model, docs: Sequence[Doc]) -> List[numpy.ndarray]:
    """(n_tokens, width) float32 numpy arrays of non-empty docs, computed by the encoder."""
    shim = get_shim(model)
    width = model.get_dim("nO")
    size, stride = _window_size(model, shim)
    pieces = doc_pieces(shim.tokenizer, docs, model.attrs.get("pieces_from", "words"))
    windows: List[numpy.ndarray] = []
    owners: List[Tuple[int, int, int]] = []
    for d, (ids, *_) in enumerate(pieces):
        for start, end in window_bounds(len(ids), size, stride):
            if end > start:
                windows.append(ids[start:end])
                owners.append((d, start, end))
    encoded = _encode_windows(model, shim, windows) if windows else []
    sums = [numpy.zeros((len(p.ids), width), dtype="float32") for p in pieces]
    counts = [numpy.zeros((len(p.ids),), dtype="float32") for p in pieces]
    for (d, start, end), vectors in zip(owners, encoded):
        sums[d][start:end] += vectors
        counts[d][start:end] += 1
    result = []
    for doc, doc_p, piece_sum, piece_count in zip(docs, pieces, sums, counts):
        piece_vecs = piece_sum / piece_count[:, None] if len(doc_p.ids) else piece_sum
        result.append(_pool_tokens(piece_vecs, doc_p, len(doc), width))
    return result


def _pool_tokens(piece_vecs: numpy.ndarray, pieces: DocPieces, n_tokens: int, width: int) -> numpy.ndarray:
    """Mean of each token's pieces; a token without pieces takes its nearest
    following piece (the last piece at the doc's end), zeros without any piece."""
    n_pieces = piece_vecs.shape[0]
    if n_pieces == 0:
        return numpy.zeros((n_tokens, width), dtype="float32")
    counts = numpy.bincount(pieces.token_idx, minlength=n_tokens)
    starts = numpy.concatenate([[0], numpy.cumsum(counts)[:-1]])
    out = numpy.empty((n_tokens, width), dtype="float32")
    has = counts > 0
    if has.any():
        out[has] = numpy.add.reduceat(piece_vecs[pieces.piece_idx], starts[has], axis=0) / counts[has, None]
    if not has.all():
        out[~has] = piece_vecs[numpy.minimum(pieces.next_piece[~has], n_pieces - 1)]
    return out


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    shim = get_shim(model)
    if shim._model is None:
        raise ValueError("FrozenEncoder.v1 is not initialized: call nlp.initialize() or load a trained pipeline.")
    xp = model.ops.xp
    width = model.get_dim("nO")
    arrays: List[Optional[numpy.ndarray]] = [None] * len(docs)
    todo: Dict[bytes, List[int]] = {}
    for i, doc in enumerate(docs):
        if len(doc) == 0:
            arrays[i] = numpy.zeros((0, width), dtype="float32")
            continue
        key = doc_key(doc)
        if key in todo:
            todo[key].append(i)
            continue
        cached = shim.cache.get(key)
        if cached is not None:
            arrays[i] = cached
        else:
            todo[key] = [i]
    if todo:
        keys = list(todo)
        for key, vectors in zip(keys, encode_docs(model, [docs[todo[key][0]] for key in keys])):
            shim.cache.put(key, vectors, is_train)
            for i in todo[key]:
                arrays[i] = vectors
    # copies: the cached arrays must not change when a later layer writes in place
    outputs = [xp.array(a, dtype="float32") for a in arrays]

    def backprop(d_outputs: List[Floats2d]) -> List[Doc]:
        return docs

    return outputs, backprop
