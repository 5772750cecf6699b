"""Adversarial pieces of AMNRE (paper section 3.4): the language discriminator
(Eq. 14), gradient reversal (Ganin et al., 2016; the single-pass alternative
to the paper's alternating updates) and the orthogonality penalty (Eq. 17)."""
from typing import Sequence

import torch
from torch import nn


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
    2048, dropout 0.1 in the paper's Table 2), LeakyReLU as in the authors' code."""

    def __init__(self, width: int, n_langs: int, hidden: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(hidden, n_langs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, n_langs)."""
        return self.layers(x)


def orthogonality_penalty(individual: torch.Tensor, consistent: torch.Tensor, langs: torch.Tensor,
                          lang_ids: Sequence[int]) -> torch.Tensor:
    """Eq. 17: sum over languages j of ||I_j^T C_j||_F^2, the rows of I_j and C_j
    being the individual and consistent embeddings of the sentences in language j."""
    total = individual.new_zeros(())
    for j in lang_ids:
        rows = langs == j
        if bool(rows.any()):
            total = total + (individual[rows].T @ consistent[rows]).pow(2).sum()
    return total
