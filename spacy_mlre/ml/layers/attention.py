"""E_p = Transformer(E_w) (kernel paper, Eq. 1): one trainable transformer-encoder
layer (multi-head self-attention + FFN, residuals, layer norm) over each doc's
token vectors, so the tail representation can mix in predicate context.

The docs of a batch are padded into one tensor with a key padding mask, so a
doc's output does not depend on what it is batched with. Empty docs skip the
layer (a fully masked row has no defined attention).
"""
from typing import Callable, List, Tuple

from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.types import Floats2d


def self_attention(width: int, heads: int = 4, ffn_width: int = 0, dropout: float = 0.1) -> Model[List[Floats2d], List[Floats2d]]:
    """A torch TransformerEncoderLayer over List[(n_tokens, width)] arrays.

    width must equal the encoder's token width (the paper keeps E_p in R^{l x h});
    ffn_width 0 means 4 * width, as in BERT.
    """
    import torch

    if width % heads:
        raise ValueError(f"attention width {width} must be divisible by its heads ({heads}).")
    layer = torch.nn.TransformerEncoderLayer(
        d_model=width, nhead=heads, dim_feedforward=ffn_width or 4 * width,
        dropout=dropout, activation="gelu", batch_first=True,
    )
    wrapped = PyTorchWrapper_v2(layer, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs)
    return Model("self_attention", _forward, layers=[wrapped], dims={"nI": width, "nO": width})


def _forward(model: Model, Xs: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    inner = model.layers[0]
    keep = [i for i, X in enumerate(Xs) if X.shape[0]]
    if keep:
        Ys_kept, bp_inner = inner([Xs[i] for i in keep], is_train)
    else:
        Ys_kept, bp_inner = [], None
    Ys = list(Xs)
    for i, Y in zip(keep, Ys_kept):
        Ys[i] = Y

    def backprop(dYs: List[Floats2d]) -> List[Floats2d]:
        dXs = [model.ops.alloc2f(*X.shape) for X in Xs]
        if keep:
            for i, dX in zip(keep, bp_inner([dYs[i] for i in keep])):
                dXs[i] = dX
        return dXs

    return Ys, backprop


def _convert_inputs(model: Model, Xs: List[Floats2d], is_train: bool):
    ops = model.ops
    lengths = [X.shape[0] for X in Xs]
    padded = ops.pad(Xs)  # (docs, max_len, width)
    pad_mask = ops.xp.arange(padded.shape[1])[None, :] >= ops.xp.asarray(lengths)[:, None]
    args = ArgsKwargs(
        args=(xp2torch(padded, requires_grad=is_train),),
        kwargs={"src_key_padding_mask": xp2torch(pad_mask)},
    )

    def reverse(d_args: ArgsKwargs) -> List[Floats2d]:
        d_padded = torch2xp(d_args.args[0])
        return [d_padded[i, :n] for i, n in enumerate(lengths)]

    return args, reverse


def _convert_outputs(model: Model, inputs_outputs, is_train: bool):
    Xs, Y_torch = inputs_outputs
    ops = model.ops
    lengths = [X.shape[0] for X in Xs]
    if Y_torch.is_nested:  # eval fast path may return a nested tensor
        Y_torch = Y_torch.to_padded_tensor(0.0)
    Y = torch2xp(Y_torch)
    Ys = [ops.xp.ascontiguousarray(Y[i, :n]) for i, n in enumerate(lengths)]

    def reverse(dYs: List[Floats2d]) -> ArgsKwargs:
        d_padded = ops.pad(dYs)
        return ArgsKwargs(args=(Y_torch,), kwargs={"grad_tensors": xp2torch(d_padded)})

    return Ys, reverse
