"""E_p = Transformer(E_w) (kernel paper, Eq. 1): one trainable transformer-encoder
layer (multi-head self-attention + FFN, residuals, layer norm) over each doc's
token vectors, so the tail representation can mix in predicate context.

The kernel reads E_p only at entity tokens, so the layer computes it only
there: those rows are the attention queries, every token of the doc is a key
and value, and the FFN and norms run on the query rows alone. The result at
those rows is the full layer's (each row of a transformer layer depends on the
others only through the keys and values); the cost and the attention matrix
shrink from (tokens x tokens) to (entity tokens x tokens), which keeps a
10,000-token doc affordable.

The docs of a batch are padded into one tensor with a key padding mask, so a
doc's output does not depend on what it is batched with. Docs without tokens
or queries skip the layer (a fully masked row has no defined attention).
"""
from typing import Callable, List, Optional, Tuple

from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.types import Floats2d, Ints1d

from .torch_averages import average_torch_weights

QueryInputs = Tuple[List[Floats2d], List[Ints1d]]


def self_attention(width: int, heads: int = 4, ffn_width: int = 0, dropout: float = 0.1) -> Model[QueryInputs, List[Floats2d]]:
    """A torch TransformerEncoderLayer over each doc's (n_tokens, width) vectors,
    evaluated at the given rows: ([X per doc], [query rows per doc]) -> [Y per
    doc], Y[k] the layer's output at row queries[k] (rows must be unique).

    width must equal the encoder's token width (the paper keeps E_p in R^{l x h});
    ffn_width 0 means 4 * width, as in BERT.
    """
    if width % heads:
        raise ValueError(f"attention width {width} must be divisible by its heads ({heads}).")
    layer = _query_layer_class()(
        d_model=width, nhead=heads, dim_feedforward=ffn_width or 4 * width,
        dropout=dropout, activation="gelu", batch_first=True,
    )
    wrapped = PyTorchWrapper_v2(layer, convert_inputs=_convert_inputs, convert_outputs=_convert_outputs)
    return average_torch_weights(Model("self_attention", _forward, layers=[wrapped], dims={"nI": width, "nO": width}))


def _query_layer_class():
    import torch

    class QueryEncoderLayer(torch.nn.TransformerEncoderLayer):
        """TransformerEncoderLayer whose outputs are computed at `queries` only
        (same parameters and state-dict keys as the torch layer)."""

        def forward(self, src, src_key_padding_mask: Optional["torch.Tensor"] = None,
                    queries: Optional["torch.Tensor"] = None, **kwargs):
            if queries is None:
                return super().forward(src, src_key_padding_mask=src_key_padding_mask, **kwargs)
            x = torch.gather(src, 1, queries[:, :, None].expand(-1, -1, src.shape[2]))
            if self.norm_first:
                kv = self.norm1(src)
                x = x + self._attend(self.norm1(x), kv, src_key_padding_mask)
                return x + self._ff_block(self.norm2(x))
            x = self.norm1(x + self._attend(x, src, src_key_padding_mask))
            return self.norm2(x + self._ff_block(x))

        def _attend(self, q, kv, key_padding_mask):
            out = self.self_attn(q, kv, kv, key_padding_mask=key_padding_mask, need_weights=False)[0]
            return self.dropout1(out)

    return QueryEncoderLayer


def _forward(model: Model, inputs: QueryInputs, is_train: bool) -> Tuple[List[Floats2d], Callable]:
    Xs, queries = inputs
    ops = model.ops
    width = model.get_dim("nO")
    inner = model.layers[0]
    keep = [i for i, (X, q) in enumerate(zip(Xs, queries)) if X.shape[0] and len(q)]
    if keep:
        Ys_kept, bp_inner = inner(([Xs[i] for i in keep], [queries[i] for i in keep]), is_train)
    else:
        Ys_kept, bp_inner = [], None
    Ys = [ops.alloc2f(len(q), width) for q in queries]
    for i, Y in zip(keep, Ys_kept):
        Ys[i] = Y

    def backprop(dYs: List[Floats2d]) -> QueryInputs:
        dXs = [ops.alloc2f(*X.shape) for X in Xs]
        if keep:
            d_kept, _ = bp_inner([dYs[i] for i in keep])
            for i, dX in zip(keep, d_kept):
                dXs[i] = dX
        return dXs, queries

    return Ys, backprop


def _convert_inputs(model: Model, inputs: QueryInputs, is_train: bool):
    Xs, queries = inputs
    ops = model.ops
    lengths = [X.shape[0] for X in Xs]
    padded = ops.pad(Xs)  # (docs, max_len, width)
    pad_mask = ops.xp.arange(padded.shape[1])[None, :] >= ops.xp.asarray(lengths)[:, None]
    n_q = max(len(q) for q in queries)
    q_padded = ops.xp.zeros((len(queries), n_q), dtype="int64")  # padding queries row 0; dropped after
    for i, q in enumerate(queries):
        q_padded[i, : len(q)] = q
    args = ArgsKwargs(
        args=(xp2torch(padded, requires_grad=is_train),),
        kwargs={"src_key_padding_mask": xp2torch(pad_mask), "queries": xp2torch(q_padded)},
    )

    def reverse(d_args: ArgsKwargs) -> QueryInputs:
        d_padded = torch2xp(d_args.args[0])
        return [d_padded[i, :n] for i, n in enumerate(lengths)], queries

    return args, reverse


def _convert_outputs(model: Model, inputs_outputs, is_train: bool):
    (Xs, queries), Y_torch = inputs_outputs
    ops = model.ops
    Y = torch2xp(Y_torch)
    Ys = [ops.xp.ascontiguousarray(Y[i, : len(q)]) for i, q in enumerate(queries)]

    def reverse(dYs: List[Floats2d]) -> ArgsKwargs:
        d_padded = ops.pad(dYs)  # every doc here has a query, so this is Y's shape
        return ArgsKwargs(args=(Y_torch,), kwargs={"grad_tensors": xp2torch(d_padded)})

    return Ys, reverse
