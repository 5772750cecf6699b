"""Held-out bag-level evaluation (AMNRE, after Mintz et al., 2009 and Lin et
al., 2016/2017): every bag of the evaluation docs gets p(r|T) for every
relation; all (bag, relation) predictions are ranked by it and compared with
the gold facts, the (bag, relation) pairs that a gold relation of any member
expresses. Reported: the precision-recall curve, its area (average precision,
as the authors' code computes it with scikit-learn; gold facts that were never
candidates count as misses), P@100/200/300 and the precision at recall 0.1,
0.2 and 0.3 (the paper's recall < 0.3 view).

Bags are keyed as the model keys them while training (its `bag_keys`), read
from the predicted docs, which carry no gold relations: the grouping cannot
depend on the labels.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy
from spacy.training import Example
from spacy.util import registry

from ..bags import KEY_SOURCES, pair_bag_keys, predict_bags
from ..relations import relation_keys


def rank_facts(scored: Sequence[tuple], gold: set, n_gold: Optional[int] = None, points: int = 200) -> Dict[str, Any]:
    """scored: (bag key, label, score) for every bag and relation; gold: the set of
    (bag key, label) facts. Returns AUC (average precision), P@N and the curve."""
    n_gold = len(gold) if n_gold is None else n_gold
    order = sorted(scored, key=lambda x: -x[2])
    hits = numpy.array([(key, label) in gold for key, label, _ in order], dtype="float64")
    tp = numpy.cumsum(hits)
    ranks = numpy.arange(1, len(order) + 1)
    precision = tp / ranks if len(order) else numpy.zeros(0)
    recall = tp / max(n_gold, 1)
    auc = float((precision * hits).sum() / max(n_gold, 1))
    out: Dict[str, Any] = {"auc": auc, "n_facts": int(n_gold), "n_predictions": len(order)}
    for n in (100, 200, 300):
        out[f"p@{n}"] = float(tp[min(n, len(order)) - 1] / min(n, len(order))) if len(order) else 0.0
    for r in (0.1, 0.2, 0.3):
        reached = numpy.nonzero(recall >= r)[0]
        out[f"p@r{r}"] = float(precision[reached].max()) if len(reached) else 0.0
    keep = numpy.unique(numpy.linspace(0, len(order) - 1, min(points, len(order))).astype(int)) if len(order) else []
    out["curve"] = {"recall": [float(recall[i]) for i in keep], "precision": [float(precision[i]) for i in keep]}
    return out


def bag_scores(examples: List[Example], nlp: Any, *, key_sources: Optional[Sequence[str]] = None,
               name: Optional[str] = None, batch_size: int = 64) -> Dict[str, Any]:
    from ..bags import _get_pipe

    pipe = _get_pipe(nlp, name)
    sources = list(key_sources or pipe.model.attrs.get("bag_keys", KEY_SOURCES))
    docs = [eg.predicted for eg in examples]
    bags = predict_bags(pipe, docs, key_sources=sources, batch_size=batch_size)
    gold = set()
    for eg in examples:
        if len(eg.predicted) != len(eg.reference):
            continue  # bag keys are read on the predicted side, which must share the tokens
        rels = relation_keys(eg.reference)
        keys = pair_bag_keys(eg.predicted, [r[:4] for r in rels], sources)
        gold.update((key, r[4]) for key, r in zip(keys, rels))
    scored = [(bag.key, label, score) for bag in bags for label, score in bag.raw.items()]
    out = rank_facts(scored, gold)
    out["n_bags"] = len(bags)
    out["n_multilingual_bags"] = sum(len(bag.langs) > 1 for bag in bags)
    return {"bags": out}


def pipeline_metric(name: str, why: str, score: Callable[[List[Example], Any], Dict[str, Any]]):
    """A metric that runs the model again: the evaluate CLI sees `needs_nlp`
    and passes the pipeline."""

    def metric(examples: List[Example], nlp: Any = None) -> Dict[str, Any]:
        if nlp is None:
            raise ValueError(f"The {name} metric needs the pipeline: {why}.")
        return score(examples, nlp)

    metric.needs_nlp = True  # type: ignore[attr-defined]
    return metric


@registry.misc("spacy_mlre.metrics.bags.v1")
def make_bags_metric():
    return pipeline_metric("bags", "it re-scores whole bags with the model", bag_scores)


def plot_pr_curve(scores: Dict[str, Any], path) -> Optional[Any]:
    """The bag-level precision-recall curve: the paper's recall < 0.3 view and the
    full curve side by side (skipped when matplotlib is missing)."""
    from ..plots import pyplot

    plt = pyplot()
    if plt is None:
        return None
    curves = scores if "bags" not in scores else {"model": scores["bags"]}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for label, bags in curves.items():
        curve = bags["curve"]
        for ax in axes:
            ax.plot(curve["recall"], curve["precision"], label=f"{label} (AUC {100 * bags['auc']:.1f})")
    axes[0].set_xlim(0, 0.3)
    axes[0].set_title("recall < 0.3")
    axes[1].set_xlim(0, 1)
    axes[1].set_title("full curve")
    for ax in axes:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def language_probe_scores(examples: List[Example], nlp: Any, *, name: Optional[str] = None, batch_size: int = 64,
                          max_pairs: int = 20000, steps: int = 300, seed: int = 0) -> Dict[str, Any]:
    """AMNRE's check of the adversarial effect without t-SNE: how well the
    language of a pair can be told from its embeddings. Reported: the model's
    own discriminator on the consistent embeddings, and a fresh linear probe
    (softmax regression fitted on one half of the pairs, scored on the other)
    on the consistent and on the individual embeddings; `chance` is the share
    of the most frequent language. Adversarial training should bring the
    consistent embeddings towards chance while the individual ones stay
    separable."""
    import torch

    from ..bags import _get_pipe
    from ..ml.models.amnre import get_net, pair_embeddings

    pipe = _get_pipe(nlp, name)
    net = get_net(pipe.model)
    docs = [eg.predicted for eg in examples]
    parts: Dict[str, List[numpy.ndarray]] = {"individual": [], "consistent": [], "langs": []}
    for start in range(0, len(docs), batch_size):
        batch = docs[start:start + batch_size]
        cands = pipe.get_candidates(batch)
        if cands.n_pairs == 0:
            continue
        emb = pair_embeddings(pipe.model, batch, cands)
        for key in parts:
            if emb[key] is not None:
                parts[key].append(emb[key])
    if not parts["langs"]:
        return {"language_probe": {"n_pairs": 0}}
    langs = numpy.concatenate(parts["langs"])
    rng = numpy.random.default_rng(seed)
    keep = rng.permutation(len(langs))[:max_pairs]
    y = torch.as_tensor(langs[keep], dtype=torch.long)
    n_langs = len(net.cfg["langs"])
    half = len(keep) // 2
    out: Dict[str, Any] = {
        "n_pairs": int(len(keep)),
        "languages": {code: int((y == i).sum()) for i, code in enumerate(net.cfg["langs"])},
        "chance": float(torch.bincount(y[half:], minlength=n_langs).max()) / max(len(keep) - half, 1),
    }
    for kind in ("consistent", "individual"):
        if not parts[kind]:
            continue
        X = torch.as_tensor(numpy.concatenate(parts[kind])[keep], dtype=torch.float32)
        if kind == "consistent" and net.discriminator is not None:
            net.discriminator.eval()
            with torch.no_grad():
                pred = net.discriminator(X[half:]).argmax(1)
            out["discriminator_consistent"] = float((pred == y[half:]).float().mean())
        out[f"probe_{kind}"] = linear_probe_accuracy(X, y, n_langs, half, steps=steps, seed=seed)
    return {"language_probe": out}


def linear_probe_accuracy(X: Any, y: Any, n_classes: int, n_fit: int, *, steps: int = 300, seed: int = 0) -> float:
    """Accuracy on rows n_fit: of a softmax regression fitted on rows :n_fit
    (features standardised with the fitting rows' statistics)."""
    import torch

    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    mean, std = X[:n_fit].mean(0), X[:n_fit].std(0) + 1e-6
    Xn = (X - mean) / std
    torch.manual_seed(seed)
    probe = torch.nn.Linear(X.shape[1], n_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(Xn[:n_fit]), y[:n_fit]).backward()
        opt.step()
    with torch.no_grad():
        return float((probe(Xn[n_fit:]).argmax(1) == y[n_fit:]).float().mean())


@registry.misc("spacy_mlre.metrics.language_probe.v1")
def make_language_probe_metric():
    return pipeline_metric("language_probe", "it reads the model's pair embeddings", language_probe_scores)
