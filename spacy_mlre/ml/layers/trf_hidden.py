"""Token vectors from a chosen hidden layer of a spacy-transformers encoder, and
its CLS embedding per doc (kernel paper: E_w from BERT's penultimate layer, E_a
the CLS embedding).

Why two registered functions. spacy-transformers 1.4 passes only
`last_hidden_state` back into the transformer: `TransformerModel`'s output
converter backprops `torch.autograd.backward(last_hidden_state, grad_tensors=...)`,
and the per-doc arrays a listener gets are detached numpy/cupy views
(`torch2xp` detaches), so a listener reading `hidden_states[-2]` with the stock
model would train on it without fine-tuning anything below it: its gradient has
nowhere to go. Hence:

- `spacy_mlre.HiddenStatesTransformer.v1` (the transformer component's model):
  spacy-transformers' own `TransformerModel` with `output_hidden_states`, whose
  output keeps `last_hidden_state` first and adds the chosen layer under the key
  `hidden_states[<layer>]` (the full tuple of all layers is dropped, so
  `doc._.trf_data` grows by one array). Its backward takes the gradients
  positionally, as the `Transformer` component passes them on after
  `unsplit_by_doc`: the first for `last_hidden_state`, the second (if any) for
  the hidden layer, and backprops both in one `torch.autograd.backward` call,
  so the layers below the chosen one get the sum of both paths.
- `spacy_mlre.TransformerHiddenListener.v1` (the downstream tok2vec): a stock
  `TransformerListener` (so the component finds it, sourcing and frozen
  transformers behave as usual) chained with a layer that aligns and pools the
  wordpieces of the chosen layer to tokens, and, when the model asks for it,
  prepends each doc's CLS row (of `last_hidden_state`, averaged over a long
  doc's strided windows) as row 0. Its gradients come back as
  (d last_hidden_state, d hidden layer), zeros where unused.

Limit: listeners of one transformer accumulate their gradients position by
position; a stock listener returns one array and this one returns two, so a
stock listener next to a `layer != -1` listener must update *before* it (come
earlier in the pipeline), or the `Transformer` component's accumulation fails.
"""
from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.layers.trfs2arrays import trfs2arrays
from thinc.api import ArgsKwargs, Model, chain
from thinc.types import Floats2d, Ragged
from transformers.file_utils import ModelOutput

LAST = "last_hidden_state"


def hidden_key(layer: int) -> str:
    """The key of hidden layer `layer` (an index into HF's hidden_states) in the model output."""
    return LAST if layer == -1 else f"hidden_states[{layer}]"


@registry.architectures("spacy_mlre.HiddenStatesTransformer.v1")
def build_hidden_states_transformer(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    hidden_layer: int = -2,
) -> Model:
    """spacy-transformers.TransformerModel.v3 that also exposes (and fine-tunes
    through) hidden layer `hidden_layer` (an index into Hugging Face's
    `hidden_states`: 0 the embeddings, -1 the last layer, -2 the penultimate).
    Every other argument is TransformerModel.v3's."""
    config = dict(transformer_config)
    config["output_hidden_states"] = True
    model = TransformerModel(name, get_spans, dict(tokenizer_config), config, mixed_precision, dict(grad_scaler_config))
    wrapper = model.layers[0]
    wrapper.attrs["convert_outputs"] = _hidden_outputs_converter(hidden_layer)
    model.attrs["hidden_layer"] = hidden_layer
    return model


def _hidden_outputs_converter(layer: int) -> Callable:
    key = hidden_key(layer)

    def convert_outputs(model: Model, inputs_outputs, is_train: bool):
        _, output = inputs_outputs
        hidden = output["hidden_states"]
        result = ModelOutput()
        result[LAST] = output[LAST]
        for name, value in output.items():
            if name not in (LAST, "hidden_states"):
                result[name] = value
        selected = hidden[layer]
        if key != LAST:
            result[key] = selected

        def backprop(d_output: ModelOutput) -> ArgsKwargs:
            grads = list(d_output.values())
            if len(grads) > 2:
                raise ValueError(
                    f"HiddenStatesTransformer.v1 got {len(grads)} gradients; it takes one for "
                    f"last_hidden_state and one for {key}."
                )
            tensors = [result[LAST], selected][: len(grads)]
            return ArgsKwargs(args=(tensors,), kwargs={"grad_tensors": grads})

        return result, backprop

    return convert_outputs


@registry.architectures("spacy_mlre.TransformerHiddenListener.v1")
def build_transformer_hidden_listener(
    pooling: Model[Ragged, Floats2d],
    layer: int = -1,
    grad_factor: float = 1.0,
    upstream: str = "*",
) -> Model[List[Doc], List[Floats2d]]:
    """Listen to a transformer component and give token vectors of hidden layer `layer`.

    layer: -1 the last layer (works with any spacy-transformers model, like
        spacy-transformers.TransformerListener.v1); any other value must be the
        upstream model's `hidden_layer` (spacy_mlre.HiddenStatesTransformer.v1),
        e.g. -2 for the penultimate layer as in the kernel paper.
    pooling: wordpieces -> token (reduce_mean.v1 as usual).
    grad_factor: scales the gradients passed to the transformer (0 freezes it
        for this component).
    A model that needs the doc's CLS embedding (KernelMatrix.v1 with
    doc_vector = "cls") switches on attrs["cls_row"] of the `trf_hidden` ref:
    each doc's array then has the CLS row of last_hidden_state first.
    """
    listener = TransformerListener(upstream_name=upstream)
    hidden = trf_hidden_arrays(pooling, layer, grad_factor)
    model = chain(listener, hidden)
    model.set_ref("listener", listener)
    model.set_ref("trf_hidden", hidden)
    model.attrs["gives_cls"] = True
    return model


def trf_hidden_arrays(pooling: Model[Ragged, Floats2d], layer: int = -1, grad_factor: float = 1.0) -> Model[List[TransformerData], List[Floats2d]]:
    """List[TransformerData] -> per doc (n_tokens, width) vectors of hidden layer
    `layer`, with the doc's CLS row first when attrs["cls_row"] is true."""
    return Model(
        "trf_hidden_arrays",
        _forward,
        layers=[trfs2arrays(pooling, grad_factor)],
        attrs={"layer": layer, "grad_factor": grad_factor, "cls_row": False},
    )


def _select(trf_data: TransformerData, key: str) -> TransformerData:
    """The same doc data with the chosen layer in the place of last_hidden_state,
    so spacy-transformers' own alignment and pooling (trfs2arrays) apply to it."""
    output = trf_data.model_output
    if LAST not in output:  # zero-length doc
        return trf_data
    if key not in output:
        if not output[LAST].any():  # the listener's zero fill for a doc without trf_data
            return trf_data
        raise ValueError(
            f"TransformerHiddenListener.v1 reads {key}, which the upstream transformer does not "
            f"give (it gives {', '.join(output.keys())}): use spacy_mlre.HiddenStatesTransformer.v1 "
            f"with hidden_layer = {key[len('hidden_states['):-1]} as the transformer's model."
        )
    return TransformerData(wordpieces=trf_data.wordpieces, model_output=ModelOutput(last_hidden_state=output[key]), align=trf_data.align)


def _cls_rows(model: Model, trf_datas: List[TransformerData], width: int) -> Tuple[Floats2d, List[Optional[int]]]:
    """(n_docs, width) CLS rows: the first wordpiece of each window of
    last_hidden_state, averaged over the doc's windows; zeros for empty docs."""
    ops, xp = model.ops, model.ops.xp
    rows = ops.alloc2f(len(trf_datas), width)
    n_windows: List[Optional[int]] = []
    for i, data in enumerate(trf_datas):
        output = data.model_output
        if LAST not in output or output[LAST].size == 0:
            n_windows.append(None)
            continue
        last = output[LAST]  # (windows, wordpieces, width)
        positions = xp.asarray(data.align.dataXd)
        if positions.size and bool((positions % last.shape[1] == 0).any()) and output[LAST].any():
            raise ValueError(
                "doc_vector = 'cls' needs a transformer whose tokenizer puts a special token "
                "(CLS, <s>) first in every window; this one aligns the first wordpiece to a doc "
                "token. Use doc_vector = 'mean' or 'max'."
            )
        rows[i] = last[:, 0, :].mean(axis=0)
        n_windows.append(last.shape[0])
    return rows, n_windows


def _forward(model: Model, trf_datas: List[TransformerData], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    layer, grad_factor = model.attrs["layer"], model.attrs["grad_factor"]
    key = hidden_key(layer)
    ops = model.ops
    Xs, bp_arrays = model.layers[0]([_select(d, key) for d in trf_datas], is_train)
    cls_row = model.attrs["cls_row"]
    if cls_row:
        width = next((d.width for d in trf_datas if LAST in d.model_output), 0)
        width = next((X.shape[1] for X in Xs if X.shape[0]), width)
        cls, n_windows = _cls_rows(model, trf_datas, width)
        Ys = [ops.xp.concatenate([cls[i : i + 1], X.reshape(-1, width)], axis=0) for i, X in enumerate(Xs)]
    else:
        Ys = Xs

    def backprop(dYs: List[Floats2d]) -> List[TransformerData]:
        if cls_row:
            d_cls = [dY[0] for dY in dYs]
            dXs = [dY[1:] for dY in dYs]
        else:
            dXs = list(dYs)
        d_selected = bp_arrays(dXs)  # one per non-empty doc, in order
        d_datas = []
        nonempty = [i for i, d in enumerate(trf_datas) if LAST in d.model_output]
        for i, d_sel in zip(nonempty, d_selected):
            data = trf_datas[i]
            d_layer = d_sel.model_output[LAST]
            if key == LAST:
                d_last = d_layer
            else:
                d_last = ops.alloc(data.model_output[LAST].shape, dtype=d_layer.dtype)
            if cls_row and n_windows[i]:
                d_last[:, 0, :] += d_cls[i] * (grad_factor / n_windows[i])
            d_output = ModelOutput(last_hidden_state=d_last)
            if key != LAST:
                d_output[key] = d_layer
            d_datas.append(TransformerData(wordpieces=data.wordpieces, model_output=d_output, align=data.align))
        return d_datas

    return Ys, backprop
