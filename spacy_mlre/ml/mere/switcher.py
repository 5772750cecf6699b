"""The Language-specific Switcher (LS) of mERE (Eq. 5-8).

T sub-modules E_t(h) = LN(ReLU(h W_u) W_d + h) (Eq. 7; a sub-module of n
layers stacks n such blocks). A router gives each language a distribution
over them, f(L) = softmax(E_l[L] W_f) (Eq. 5), from a learned table of
language embeddings. Training mixes all sub-modules with those weights
(Eq. 8), so every one gets gradients; prediction keeps the k most probable
per language and renormalises their weights (top-k), computing only the
kept sub-modules.

routing = "language" is the paper's mERE14 ablation: one sub-module per
training language, no router. A language never seen in training is routed
with the mean of the known languages' distributions (the expected routing);
with language routing that is the uniform mix of their sub-modules.
"""
from typing import Callable, Dict, List, Sequence, Tuple

import numpy
from thinc.api import LayerNorm, Linear, Model, Relu, chain, glorot_uniform_init, normal_init, residual
from thinc.types import Floats2d, Ints1d

SwitcherInputs = Tuple[Floats2d, Ints1d, List[str]]
ROUTINGS = ("router", "language")


def language_switcher(
    width: int,
    hidden_width: int,
    module_layers: Sequence[int] = (1, 1, 1, 2, 2, 2),
    top_k: int = 3,
    routing: str = "router",
) -> Model[SwitcherInputs, Floats2d]:
    """LS over (flat token vectors, doc lengths, doc languages).

    width: d, the token width (in and out). hidden_width: b of W_u / W_d.
    module_layers: the layer count of each sub-module; T = len(module_layers).
    top_k: sub-modules kept per language at prediction (k >= T: all, as in training).
    routing: "router" (Eq. 5) or "language" (mERE14: sub-module i serves the
        i-th training language; needs T >= number of languages).
    """
    if routing not in ROUTINGS:
        raise ValueError(f"Unknown routing {routing!r}: choose one of {', '.join(ROUTINGS)}.")
    if not module_layers or any(int(n) < 1 for n in module_layers):
        raise ValueError(f"module_layers must be layer counts >= 1, got {list(module_layers)}.")
    n_modules = len(module_layers)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1 (at most T = {n_modules} modules are used), got {top_k}.")
    modules = [_sub_module(width, hidden_width, int(n)) for n in module_layers]
    params = {"E_l": None, "W_f": None} if routing == "router" else {}
    return Model(
        "language_switcher",
        _forward,
        init=_init,
        layers=modules,
        params=params,
        dims={"nI": width, "nO": width, "nL": None},
        attrs={"top_k": top_k, "routing": routing, "langs": [], "module_layers": [int(n) for n in module_layers]},
    )


def _sub_module(width: int, hidden_width: int, n_layers: int) -> Model[Floats2d, Floats2d]:
    blocks = [
        chain(residual(chain(Relu(nO=hidden_width, nI=width), Linear(nO=width, nI=hidden_width))), LayerNorm(nI=width))
        for _ in range(n_layers)
    ]
    return chain(*blocks) if len(blocks) > 1 else blocks[0]


def set_languages(model: Model, langs: Sequence[str]) -> None:
    """Fix the languages the router knows (before initialize)."""
    langs = sorted(set(langs))
    if model.attrs["routing"] == "language" and len(langs) > len(model.layers):
        raise ValueError(
            f"Language routing needs one sub-module per language: {len(langs)} languages "
            f"({', '.join(langs)}) but {len(model.layers)} sub-modules. Give module_layers "
            f"at least {len(langs)} entries."
        )
    model.attrs["langs"] = langs
    model.set_dim("nL", max(len(langs), 1), force=True)


def _init(model: Model, X=None, Y=None) -> None:
    width = model.get_dim("nI")
    if not model.has_dim("nL"):
        set_languages(model, [])
    sample = model.ops.alloc2f(2, width)
    for module in model.layers:
        module.initialize(X=sample, Y=sample)
    if model.attrs["routing"] == "router":
        model.set_param("E_l", normal_init(model.ops, (model.get_dim("nL"), width), mean=0.0))
        model.set_param("W_f", glorot_uniform_init(model.ops, (width, len(model.layers))))


def _softmax(xp, x):
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def language_weights(model: Model) -> numpy.ndarray:
    """(known languages + 1, T): selection probabilities per known language,
    and in the last row the fallback for an unseen language."""
    xp = model.ops.xp
    n_langs, n_modules = len(model.attrs["langs"]), len(model.layers)
    if model.attrs["routing"] == "router":
        probs = _softmax(xp, model.get_param("E_l") @ model.get_param("W_f"))[: max(n_langs, 1)]
        if not n_langs:
            probs = xp.full((1, n_modules), 1.0 / n_modules, dtype="float32")
    else:
        probs = xp.zeros((max(n_langs, 1), n_modules), dtype="float32")
        if n_langs:
            probs[xp.arange(n_langs), xp.arange(n_langs)] = 1.0
        else:
            probs[0] = 1.0 / n_modules
    return xp.concatenate([probs, probs.mean(axis=0, keepdims=True)])


def router_probabilities(model: Model) -> Dict[str, List[float]]:
    """Selection probability of every sub-module per training language (the
    paper's Fig. 8), plus "unseen" for the fallback."""
    probs = model.ops.to_numpy(language_weights(model))
    names = list(model.attrs["langs"]) + ["unseen"]
    return {name: [float(p) for p in row] for name, row in zip(names, probs)}


def top_k_weights(weights: numpy.ndarray, k: int, xp=numpy) -> numpy.ndarray:
    """Keep the k largest weights of each row, renormalised to sum to 1."""
    if k >= weights.shape[1]:
        return weights
    order = xp.argsort(-weights, axis=1, kind="stable")[:, :k]
    keep = xp.zeros(weights.shape, dtype=bool)
    xp.put_along_axis(keep, order, True, axis=1)
    kept = xp.where(keep, weights, 0.0)
    return kept / xp.maximum(kept.sum(axis=1, keepdims=True), 1e-12)


def lang_indices(model: Model, langs: Sequence[str]) -> numpy.ndarray:
    """Row of each doc's language in `language_weights` (unseen: the last)."""
    index = {lang: i for i, lang in enumerate(model.attrs["langs"])}
    fallback = len(model.attrs["langs"])
    return numpy.array([index.get(lang, fallback) for lang in langs], dtype="int64")


def _forward(model: Model, inputs: SwitcherInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    X, lengths, langs = inputs
    ops = model.ops
    xp = ops.xp
    lengths_np = numpy.asarray(ops.to_numpy(lengths), dtype="int64")
    table = language_weights(model)
    rows_of_doc = xp.asarray(lang_indices(model, langs))
    doc_weights = table[rows_of_doc]
    if not is_train:
        doc_weights = top_k_weights(doc_weights, model.attrs["top_k"], xp)
    tok_weights = xp.repeat(doc_weights, xp.asarray(lengths_np), axis=0) if len(lengths_np) else doc_weights
    Y = ops.alloc2f(*X.shape)
    used = []
    for t, module in enumerate(model.layers):
        rows = xp.nonzero(tok_weights[:, t] > 0)[0] if X.shape[0] else xp.zeros((0,), dtype="int64")
        if rows.shape[0] == 0:
            continue
        M, bp_M = module(X[rows], is_train)
        Y[rows] += tok_weights[rows, t : t + 1] * M
        used.append((t, rows, M, bp_M))

    def backprop(dY: Floats2d) -> SwitcherInputs:
        dX = ops.alloc2f(*X.shape)
        d_tok_weights = xp.zeros(tok_weights.shape, dtype="float32")
        for t, rows, M, bp_M in used:
            dX[rows] += bp_M(tok_weights[rows, t : t + 1] * dY[rows])
            d_tok_weights[rows, t] = (dY[rows] * M).sum(axis=1)
        if model.attrs["routing"] == "router" and model.attrs["langs"] and len(lengths_np):
            ends = numpy.cumsum(lengths_np)
            cum = xp.concatenate([xp.zeros((1, d_tok_weights.shape[1]), dtype="float32"), xp.cumsum(d_tok_weights, axis=0)])
            d_doc = cum[xp.asarray(ends)] - cum[xp.asarray(ends - lengths_np)]
            n_langs = len(model.attrs["langs"])
            d_table = xp.zeros(table.shape, dtype="float32")
            xp.add.at(d_table, rows_of_doc, d_doc)
            # the fallback row is the mean of the known rows
            d_probs = d_table[:n_langs] + d_table[n_langs:] / n_langs
            probs = table[:n_langs]
            d_logits = probs * (d_probs - (d_probs * probs).sum(axis=1, keepdims=True))
            E_l, W_f = model.get_param("E_l"), model.get_param("W_f")
            model.inc_grad("W_f", E_l[:n_langs].T @ d_logits)
            d_E_l = xp.zeros(E_l.shape, dtype="float32")
            d_E_l[:n_langs] = d_logits @ W_f.T
            model.inc_grad("E_l", d_E_l)
        return dX, lengths, langs

    return Y, backprop
