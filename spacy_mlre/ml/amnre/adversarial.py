"""Adversarial pieces of AMNRE (paper section 3.4): the language discriminator
(Eq. 14) and its targets, gradient reversal (Ganin et al., 2016; the
single-pass alternative to the paper's alternating updates) and the
orthogonality penalty (Eq. 17).

Where the paper's equations and the authors' released code (thunlp/AMNRE)
differ, both are here and the code's form is the default, because the
equations as written do not train: Eq. 16's encoder objective, min log D[j],
is unbounded (the encoders can push the discriminator to be confidently
wrong, which leaves the languages as separable as before), and Eq. 17's raw
||I^T C||_F^2 grows with the square of the number of sentences, so with
lambda = 0.02 it swamps the extraction loss on batches of many pairs.
"""
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

OBJECTIVES = ("flip", "eq16")


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def grad_reverse(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by -weight, so the layers
    below maximise what the layers above minimise."""
    return _GradReverse.apply(x, weight)


class Discriminator(nn.Module):
    """D(s) = softmax(MLP(s)) over the training languages: a 2-layer MLP (hidden
    2048, dropout 0.1 in the paper's Table 2), with LeakyReLU and the dropout on
    its input as in the authors' code."""

    def __init__(self, width: int, n_langs: int, hidden: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_langs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, n_langs)."""
        return self.layers(x)


def language_targets(langs: torch.Tensor, n_langs: int, smoothing: float = 0.0, flip: bool = False) -> torch.Tensor:
    """Target distributions over languages for the discriminator's cross-entropy.

    The true language gets 1 - smoothing and the others share `smoothing`
    (the authors' code smooths D's binary targets to 0.9 / 0.1). flip swaps the
    two roles: the encoders' fooling target in the authors' code (their labels
    1 - y), which for two languages is "the other language" and for more is
    spread over the other languages."""
    if n_langs < 2:
        return torch.ones((langs.shape[0], 1))
    on, off = 1.0 - smoothing, smoothing / (n_langs - 1)
    if flip:
        on, off = smoothing, (1.0 - smoothing) / (n_langs - 1)
    out = torch.full((langs.shape[0], n_langs), off)
    out[torch.arange(langs.shape[0]), langs] = on
    return out


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits against target distributions (rows sum to 1)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def orthogonality_penalty(individual: torch.Tensor, consistent: torch.Tensor, langs: torch.Tensor,
                          lang_ids: Sequence[int], normalize: bool = True) -> torch.Tensor:
    """Eq. 17: sum over languages j of ||I_j^T C_j||_F^2, the rows of I_j and C_j
    being the individual and consistent embeddings of the sentences in language j.

    normalize (the authors' code, after Bousmalis et al., 2016): each row is
    centred on the batch mean and scaled to unit length, and the squared
    entries of I_j^T C_j are averaged instead of summed, so the penalty measures
    correlation and no longer grows with the embeddings' scale and width.
    False: Eq. 17 as printed."""
    total = individual.new_zeros(())
    for j in lang_ids:
        rows = langs == j
        if not bool(rows.any()):
            continue
        ind, cons = individual[rows], consistent[rows]
        if normalize:
            ind = F.normalize(ind - ind.mean(dim=0, keepdim=True), dim=1)
            cons = F.normalize(cons - cons.mean(dim=0, keepdim=True), dim=1)
            total = total + (ind.T @ cons).pow(2).mean()
        else:
            total = total + (ind.T @ cons).pow(2).sum()
    return total
