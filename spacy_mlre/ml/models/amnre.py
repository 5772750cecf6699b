"""spacy_mlre.AMNRE.v1: adversarial multilingual neural relation extraction
(paper: amnre-adversarial-multilingual-nre), a pair-scoring model of the
`relation_extractor` pipe (single-label decoding: softmax with no-relation).

word embeddings (the `embed` layer: spaCy's hash embeddings, or static vectors)
+ two position embeddings -> per-language individual and consistent CNN / BiGRU
sentence encoders -> selective attention over bags -> log p(r|T) (Eq. 11).

Bags: while training, the candidate pairs of a batch that share a bag key
(`spacy_mlre.bag_keys`) are one bag, so train with `spacy_mlre.bag_batcher.v1`,
which keeps bags whole. The pipe's predict scores each pair as a bag of one
(its own sentence); `spacy_mlre.bags.predict_bags` scores whole bags across a
corpus. The network lives in `ml/amnre/net.py`; this module turns docs
and candidates into its tensors and runs it through a PyTorch shim, so thinc's
optimizer trains it and the pipeline saves and loads it.

Training follows the pipe's contract (ml/inputs.py): the forward pass never
changes a weight; Eq. 13 on bags is the `get_loss` hook (`amnre_loss`), whose
gradient per pair backprop takes; the alternating adversarial steps are the
`auxiliary_update` hook (`adversarial_update`), which the pipe runs only when
it updates with an optimizer, and whose two Adams the shim saves.
"""
from io import BytesIO
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import srsly
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, PyTorchShim, torch2xp, xp2torch
from thinc.types import Floats2d

from ...bag_keys import KEY_SOURCES, pair_bag_keys
from ...language import get_lang
from ..inputs import Candidates, PairInputs
from ..losses import target_distribution
from ..amnre.determinism import deterministic_torch
from ..layers.torch_averages import average_torch_weights


@registry.architectures("spacy_mlre.AMNRE.v1")
def build_amnre(
    embed: Model[List[Doc], List[Floats2d]],
    langs: Optional[List[str]] = None,
    encoder: str = "cnn",
    hidden_width: Optional[int] = None,
    window: int = 3,
    position_width: int = 5,
    max_position: int = 60,
    context_window: int = 60,
    dropout: float = 0.5,
    individual: bool = True,
    consistent: bool = True,
    share_encoders: bool = False,
    share_relations: bool = False,
    adversarial: Optional[str] = "alternating",
    adversarial_ratio: List[int] = [1, 1, 5],
    adversarial_weight: float = 1.0,
    adversarial_learn_rate: float = 0.0001,
    adversarial_pairs: int = 512,
    adversarial_objective: str = "flip",
    discriminator_width: int = 2048,
    discriminator_dropout: float = 0.1,
    discriminator_smoothing: float = 0.1,
    orthogonality: float = 0.02,
    orthogonality_normalize: bool = True,
    bag_keys: List[str] = list(KEY_SOURCES),
    nO: Optional[int] = None,
) -> Model[PairInputs, Floats2d]:
    """Score every candidate pair for every label plus no-relation (log p(r|T)).

    embed: token vectors (k_w wide; the paper's word embeddings).
    langs: the languages with their own encoders; null takes them from the
        initialization sample. A doc in any other language uses the first one's.
    encoder: "cnn" (window 3, 230 filters) or "bigru" (200 per direction);
        hidden_width null keeps those. position_width k_p; distances clipped to
        +-max_position; dropout on sentence embeddings.
    context_window: a pair's instance is the tokens within this many of either
        entity (the paper's instances are sentences; this bounds the cost of a
        pair in a long doc); 0 encodes the whole doc for every pair.
    individual, consistent: the two halves of the model (Joint / mono-lingual
        baselines: consistent = false). share_encoders: MNRE-style, one encoder
        per language feeds both attentions. share_relations: the Share baseline.
    adversarial: "alternating" (the paper: per batch, extraction : discriminator
        : encoder updates in `adversarial_ratio`, the latter two with Adam at
        `adversarial_learn_rate` on at most `adversarial_pairs` pairs), "reversal"
        (gradient reversal scaled by `adversarial_weight`, one pass) or null (noA).
    adversarial_objective: the encoders' side of the game: "flip" (the authors'
        code: cross-entropy towards the swapped language targets) or "eq16"
        (the paper's min log D[j] as printed; unbounded, see ml/amnre/adversarial.py).
    discriminator_width, discriminator_dropout: the 2-layer MLP discriminator;
        discriminator_smoothing: label smoothing of its targets (the code's 0.1).
    orthogonality: lambda_3 of the penalty (0: noO). orthogonality_normalize:
        the code's centred, unit-length, averaged form (false: Eq. 17 as printed).
    bag_keys: sources of the bag key of a pair while training (spacy_mlre.bag_keys).
    """
    cfg = {
        "langs": list(langs) if langs else None, "encoder": encoder, "hidden_width": hidden_width,
        "window": window, "position_width": position_width, "max_position": max_position,
        "context_window": context_window, "dropout": dropout,
        "individual": individual, "consistent": consistent, "share_encoders": share_encoders,
        "share_relations": share_relations, "adversarial": adversarial, "adversarial_ratio": list(adversarial_ratio),
        "adversarial_weight": adversarial_weight, "adversarial_learn_rate": adversarial_learn_rate,
        "adversarial_objective": adversarial_objective, "discriminator_width": discriminator_width,
        "discriminator_dropout": discriminator_dropout, "discriminator_smoothing": discriminator_smoothing,
        "orthogonality": orthogonality, "orthogonality_normalize": orthogonality_normalize,
    }
    return average_torch_weights(Model(
        "amnre",
        _forward,
        init=_init,
        layers=[embed],
        refs={"embed": embed},
        shims=[AMNREShim(None)],
        dims={"nO": nO},
        attrs={
            "amnre_cfg": cfg, "bag_keys": list(bag_keys), "adversarial_pairs": adversarial_pairs,
            "get_loss": amnre_loss, "auxiliary_update": adversarial_update,
        },
    ))


class AMNREShim(PyTorchShim):
    """A PyTorch shim that rebuilds the network from its stored config when
    loading, because the network's shape (languages, labels) is only known
    after initialization. It also saves the state of the adversarial steps'
    two Adams, so training resumed from a saved pipeline continues the game
    where it stopped."""

    def to_bytes(self) -> bytes:
        msg = {"config": self.cfg, "state": self._serialize_model(self._model)}
        state = self._model.adversarial_state()
        if state is not None:
            msg["adversarial_optimizers"] = _torch_dumps(state)
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "AMNREShim":
        import torch

        from ..amnre.net import AMNRENet

        msg = srsly.msgpack_loads(bytes_data)
        self.cfg = msg["config"]
        self._model = self._deserialize_model(AMNRENet(self.cfg), msg["state"], torch.device("cpu"))
        # pipelines saved before the Adams' state was saved start them fresh
        state = msg.get("adversarial_optimizers")
        self._model.load_adversarial_state(_torch_loads(state) if state is not None else None)
        return self


def _torch_dumps(obj: Any) -> bytes:
    import torch

    buffer = BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _torch_loads(data: bytes) -> Any:
    import torch

    return torch.load(BytesIO(data), map_location="cpu")


def get_net(model: Model):
    net = model.shims[0]._model
    if net is None:
        raise ValueError("The AMNRE model is not initialized: call nlp.initialize() first.")
    return net


def _init(model: Model, X: Optional[PairInputs] = None, Y: Optional[Floats2d] = None) -> None:
    from ..amnre.net import AMNRENet

    embed = model.get_ref("embed")
    docs = X[0] if X is not None else None
    embed.initialize(X=docs)
    if embed.has_dim("nO") and embed.get_dim("nO"):
        word_width = embed.get_dim("nO")
    elif docs:
        word_width = embed.predict(docs)[0].shape[1]
    else:
        raise ValueError("AMNRE needs sample docs to infer the embedding width.")
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    cfg = dict(model.attrs["amnre_cfg"])
    if not cfg["langs"]:
        if not docs:
            raise ValueError("AMNRE needs `langs` or sample docs to know its languages.")
        cfg["langs"] = sorted({get_lang(doc) for doc in docs})
    cfg.update(n_rel=model.get_dim("nO"), word_width=word_width)
    model.attrs["amnre_cfg"] = cfg
    shim = model.shims[0]
    shim._model = AMNRENet(cfg)
    shim.cfg = cfg


def _tensors(model: Model, docs: Sequence[Doc], cands: Candidates, is_train: bool):
    """Padded word vectors and the index tensors of the network, plus the
    embedding's backprop and the padding lengths."""
    import torch

    ops = model.ops
    net = get_net(model)
    tokvecs, bp_embed = model.get_ref("embed")(list(docs), is_train)
    lengths = [len(doc) for doc in docs]
    width = net.cfg["word_width"]
    padded = ops.pad(tokvecs) if docs and max(lengths) else ops.alloc3f(len(docs), 1, width)
    words = xp2torch(padded, requires_grad=is_train)
    index = {code: i for i, code in enumerate(net.cfg["langs"])}
    sent_lang = torch.tensor([index.get(get_lang(doc), 0) for doc in docs], dtype=torch.long)
    pairs = cands.pairs
    heads = torch.as_tensor(numpy.ascontiguousarray(cands.spans[pairs[:, 0]]), dtype=torch.long)
    tails = torch.as_tensor(numpy.ascontiguousarray(cands.spans[pairs[:, 1]]), dtype=torch.long)
    pair_sent = torch.as_tensor(cands.pair_doc, dtype=torch.long)
    return words, torch.tensor(lengths, dtype=torch.long), sent_lang, pair_sent, heads, tails, bp_embed, lengths


def candidate_bag_keys(docs: Sequence[Doc], cands: Candidates, sources: Sequence[str]) -> List[str]:
    keys: List[str] = []
    pair_offset = 0
    for i, doc in enumerate(docs):
        n = int(cands.pair_lengths[i])
        rows = cands.pairs[pair_offset : pair_offset + n]
        pairs = [(*cands.spans[h], *cands.spans[t]) for h, t in rows.tolist()]
        keys.extend(pair_bag_keys(doc, pairs, sources))
        pair_offset += n
    return keys


def pair_bags(model: Model, docs: Sequence[Doc], cands: Candidates) -> Tuple[numpy.ndarray, int]:
    """The training bags: every candidate pair's bag index (pairs sharing a bag
    key, bags in first-seen order) and the number of bags. The forward pass
    and the loss hook both group the pairs with it."""
    keys = candidate_bag_keys(docs, cands, model.attrs["bag_keys"])
    uniq = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return numpy.array([uniq[k] for k in keys], dtype="int64"), len(uniq)


def _record_losses(model: Model, losses: Dict[str, float]) -> Dict[str, float]:
    """Keep the latest training step's losses on model.attrs["last_losses"]."""
    model.attrs["last_losses"] = {**model.attrs.get("last_losses", {}), **losses}
    return model.attrs["last_losses"]


def _forward(model: Model, inputs: PairInputs, is_train: bool) -> Tuple[Floats2d, Callable]:
    """log p(r|T) of every candidate pair: while training, of its bag (the
    rows of one bag are copies); at prediction, of the pair as a bag of one.
    Changes no weight."""
    import torch

    docs, cands = inputs
    net = get_net(model)
    words, lengths_t, sent_lang, pair_sent, heads, tails, bp_embed, lengths = _tensors(model, docs, cands, is_train)
    on_cpu = words.device.type == "cpu"  # CUDA's deterministic mode needs an environment variable set
    if is_train:
        bags, n_bags = pair_bags(model, docs, cands)
        pair_bag = torch.as_tensor(bags, device=words.device)
    else:
        pair_bag = torch.arange(cands.n_pairs, dtype=torch.long, device=words.device)
        n_bags = cands.n_pairs
    net.train(is_train)
    with torch.set_grad_enabled(is_train), deterministic_torch(is_train and on_cpu):
        bag_lp, ind, cons = net(words, lengths_t, sent_lang, pair_sent, heads, tails, pair_bag, n_bags)
        pair_lp = bag_lp[pair_bag]
        own = net.regularizers(ind, cons, sent_lang[pair_sent], n_bags) if is_train and cands.n_pairs else {}
    if own:
        _record_losses(model, {k: v.item() for k, v in own.items()})
    logits = model.ops.asarray2f(torch2xp(pair_lp.detach()))

    def backprop(dY: Floats2d) -> PairInputs:
        """dY: the gradient of the loss w.r.t. the output (n_pairs, n_outputs).
        The model adds its own regularizers, which need no targets: the
        orthogonality penalty and, in reversal mode, the reversed
        discriminator loss (net.regularizers)."""
        outputs = [(pair_lp, xp2torch(model.ops.asarray2f(dY)).to(pair_lp.device))]
        if own:
            regularizer = sum(own.values())
            outputs.append((regularizer, torch.ones_like(regularizer)))
        outputs = [(t, g) for t, g in outputs if t.requires_grad]
        if outputs:
            with deterministic_torch(on_cpu):
                torch.autograd.backward([t for t, _ in outputs], [g for _, g in outputs])
        d_padded = torch2xp(words.grad) if words.grad is not None else model.ops.alloc3f(*words.shape)
        bp_embed([model.ops.asarray2f(d_padded[i, :n]) for i, n in enumerate(lengths)])
        return inputs

    return logits, backprop


def amnre_loss(model: Model, X: PairInputs, Y: Floats2d, targets: numpy.ndarray, weights: numpy.ndarray,
               multi_label: bool) -> Tuple[float, Floats2d]:
    """The `get_loss` hook: Eq. 13, -log p(r_l|T_l) of every bag of the batch
    (the pairs grouped by bag key, as the training forward pass grouped them),
    the gold relation being the attention query, as a weighted mean over the
    bags (`bag_targets`). Y's rows of one bag are copies of its log p(r|T), so
    each row gets an equal share of its bag's gradient.

    The loss returned is Eq. 13 plus the orthogonality penalty of the latest
    training forward pass (the extraction step's objective; the penalty's
    gradient is added by backprop itself). The parts are on
    model.attrs["last_losses"] ("nre", "penalty", and the adversarial losses)."""
    if multi_label:
        raise ValueError(
            "AMNRE.v1 scores a bag with one softmax over the labels and no-relation (Eq. 11-12): "
            "set the relation_extractor's multi_label = false."
        )
    docs, cands = X
    bags, n_bags = pair_bags(model, docs, cands)
    bag_w, bag_dist = bag_targets(target_distribution(targets), weights, bags, n_bags)
    log_probs = model.ops.to_numpy(Y).astype("float64")
    bag_lp = numpy.zeros((n_bags, log_probs.shape[1]))
    bag_lp[bags] = log_probs
    d_bag = -bag_w[:, None] * bag_dist
    nre = float((d_bag * bag_lp).sum())
    share = 1.0 / numpy.maximum(numpy.bincount(bags, minlength=n_bags), 1)
    d_pairs = d_bag[bags] * share[bags, None]
    losses = _record_losses(model, {"nre": nre})
    return nre + losses.get("penalty", 0.0), model.ops.asarray2f(d_pairs.astype("float32"))


def bag_targets(dist: numpy.ndarray, weights: numpy.ndarray, bags: numpy.ndarray,
                n_bags: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Each bag's weight and gold distribution from its pairs': the
    distribution is the pairs' own averaged by their weights; the weight is
    the mean weight of its kept pairs (0 when the pipe dropped them all),
    normalised to sum to 1 over the batch's bags."""
    total = numpy.bincount(bags, weights=weights, minlength=n_bags)
    bag_dist = numpy.zeros((n_bags, dist.shape[1]))
    numpy.add.at(bag_dist, bags, weights[:, None] * dist)
    bag_dist /= numpy.maximum(total, 1e-12)[:, None]
    kept = numpy.bincount(bags, weights=(weights > 0).astype("float64"), minlength=n_bags)
    bag_w = numpy.where(kept > 0, total / numpy.maximum(kept, 1.0), 0.0)
    return bag_w / max(float(bag_w.sum()), 1e-12), bag_dist


def adversarial_update(model: Model, X: PairInputs) -> Dict[str, float]:
    """The `auxiliary_update` hook: in "alternating" mode, the paper's
    discriminator and encoder steps that precede each extraction step (Sec.
    3.5, ratio 1:1:5), each with its own Adam at adversarial_learn_rate, on at
    most adversarial_pairs of the batch's pairs. The pipe calls it only when
    it updates with an optimizer. Returns the discriminator's and the
    encoders' (fooling) losses."""
    net = get_net(model)
    docs, cands = X
    if net.cfg["adversarial"] != "alternating" or cands.n_pairs == 0:
        return {}
    words, lengths_t, sent_lang, pair_sent, heads, tails, _, _ = _tensors(model, docs, cands, False)
    with deterministic_torch(words.device.type == "cpu"):
        losses = net.adversarial_steps(words, lengths_t, sent_lang, pair_sent, heads, tails,
                                       model.attrs["adversarial_pairs"])
    _record_losses(model, losses)
    return losses


def bag_log_probs(model: Model, docs: Sequence[Doc], cands: Candidates, keys: Sequence[str]) -> Tuple[List[str], numpy.ndarray]:
    """log p(r|T) (labels then no-relation) of every bag among the candidates,
    the pairs grouped by `keys` (one per candidate pair). Returns the bag keys
    in first-seen order and a (n_bags, n_outputs) array."""
    import torch

    net = get_net(model)
    uniq = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    if cands.n_pairs == 0:
        return [], numpy.zeros((0, model.get_dim("nO")), dtype="float32")
    words, lengths_t, sent_lang, pair_sent, heads, tails, _, _ = _tensors(model, docs, cands, False)
    pair_bag = torch.tensor([uniq[k] for k in keys], dtype=torch.long)
    net.eval()
    with torch.no_grad():
        bag_lp, _, _ = net(words, lengths_t, sent_lang, pair_sent, heads, tails, pair_bag, len(uniq))
    return list(uniq), bag_lp.numpy()


def pair_embeddings(model: Model, docs: Sequence[Doc], cands: Candidates) -> Dict[str, Any]:
    """Individual and consistent embeddings of every candidate pair and its
    language id, for checks such as the discriminator accuracy."""
    import torch

    net = get_net(model)
    words, lengths_t, sent_lang, pair_sent, heads, tails, _, _ = _tensors(model, docs, cands, False)
    net.eval()
    with torch.no_grad():
        ind, cons = net.encode(words, lengths_t, sent_lang, pair_sent, heads, tails)
    return {"individual": None if ind is None else ind.numpy(), "consistent": None if cons is None else cons.numpy(),
            "langs": sent_lang[pair_sent].numpy()}
