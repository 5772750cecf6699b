"""Joint extraction scores as the mERE paper reports them (section 4.2, Fig. 3, 5, 8).

Per doc, the gold and predicted relations are compared as sets of
- triples: head span, tail span and relation (exact token boundaries);
- entity pairs: head and tail spans, whatever the relation;
- relations: the relation labels the doc expresses;
- heads / tails: the head spans / the tail spans;
micro P/R/F over all docs and per language. `router_probabilities` and
`plot_router_heatmap` draw the switcher's selection probabilities per
language (the paper's Fig. 8) for the evaluate command.
"""
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from spacy.scorer import PRFScore
from spacy.training import Example
from spacy.util import registry

from ..language import get_lang
from ..relations import relation_keys
from ..scorer import predicted_keys_in_reference

VIEWS = ("triple", "pair", "relation", "head", "tail")


def _views(keys) -> Dict[str, set]:
    return {
        "triple": set(keys),
        "pair": {k[:4] for k in keys},
        "relation": {k[4] for k in keys},
        "head": {k[:2] for k in keys},
        "tail": {k[2:4] for k in keys},
    }


def _add(score: PRFScore, gold: set, pred: set) -> None:
    score.tp += len(gold & pred)
    score.fp += len(pred - gold)
    score.fn += len(gold - pred)


def joint_scores(examples: List[Example]) -> Dict[str, Any]:
    overall = {view: PRFScore() for view in VIEWS}
    per_lang: Dict[str, Dict[str, PRFScore]] = defaultdict(lambda: {view: PRFScore() for view in VIEWS})
    for eg in examples:
        gold = _views(relation_keys(eg.reference))
        pred = _views(predicted_keys_in_reference(eg))
        lang = get_lang(eg.reference)
        for view in VIEWS:
            _add(overall[view], gold[view], pred[view])
            _add(per_lang[lang][view], gold[view], pred[view])
    out: Dict[str, Any] = {}
    for view, score in overall.items():
        out[f"joint_{view}_p"] = score.precision
        out[f"joint_{view}_r"] = score.recall
        out[f"joint_{view}_f"] = score.fscore
    out["joint_per_lang"] = {
        lang: {view: {"p": s.precision, "r": s.recall, "f": s.fscore} for view, s in views.items()}
        for lang, views in sorted(per_lang.items())
    }
    return out


@registry.misc("spacy_mlre.metrics.joint.v1")
def make_joint_metric():
    return joint_scores


def router_probabilities(nlp) -> Optional[Dict[str, List[float]]]:
    """The LS router's selection probabilities per language of the first
    relation extractor with a switcher, or None."""
    from ..ml.models.mere import mere_router_probabilities

    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is not None and model.attrs.get("protocol") == "joint":
            probs = mere_router_probabilities(model)
            if probs is not None:
                return probs
    return None


def plot_router_heatmap(probs: Dict[str, List[float]], path: Path) -> Optional[Path]:
    """Sub-modules x languages heatmap of selection probabilities (Fig. 8);
    skipped when matplotlib is missing."""
    from ..plots import pyplot

    plt = pyplot()
    if plt is None:
        return None
    langs = list(probs)
    n_modules = len(next(iter(probs.values())))
    matrix = [[probs[lang][t] for lang in langs] for t in range(n_modules)]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(langs) + 1.5), 0.45 * n_modules + 1.2))
    # darker = more likely to be selected; the values are written in the cells,
    # since a barely trained router stays close to uniform (1 / T everywhere)
    image = ax.imshow(matrix, cmap="Blues", aspect="auto")
    for t, row in enumerate(matrix):
        for i, value in enumerate(row):
            ax.text(i, t, f"{value:.3f}", ha="center", va="center", fontsize=7, color="black")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(n_modules), [f"θ{t + 1}" for t in range(n_modules)])
    ax.set_title("LS selection probability per language")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
