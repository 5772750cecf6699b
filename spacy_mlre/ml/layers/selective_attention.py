"""Selective attention over the sentences of a bag (AMNRE Eq. 7-10, Lin et al.,
2016) and the per-query relation scores of Eq. 11-12, for many bags at once.

Sentences are rows of one matrix; `groups` says which bag (or bag-and-language
for the language-individual attention) each row belongs to. Every relation is
used as a query, so one call gives, per group, the representation s^(r) for
each relation r and the log-probability of r computed from it: the "diagonal"
log p(r | s^(r)). Training picks the gold relation's entry (the gold relation
is the query), inference uses every entry, exactly as the paper does it.
"""
from typing import Tuple

import torch
from torch.nn import functional as F


def segment_softmax(scores: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Softmax of scores (n_rows, n_rel) over the rows of each group, per column."""
    n_rel = scores.shape[1]
    index = groups[:, None].expand(-1, n_rel)
    maxes = scores.new_full((n_groups, n_rel), float("-inf")).scatter_reduce(0, index, scores, "amax")
    exp = torch.exp(scores - maxes[groups].detach())
    sums = exp.new_zeros((n_groups, n_rel)).index_add(0, groups, exp)
    return exp / sums[groups]


def selective_attention(Y: torch.Tensor, queries: torch.Tensor, groups: torch.Tensor,
                        n_groups: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7-8 / 9-10: alpha = softmax over a group's rows of r^T y, s = sum alpha y.

    Y: (n_rows, k) sentence embeddings; queries: (n_rel, k) one vector per
    relation. Returns S (n_groups, n_rel, k) and alpha (n_rows, n_rel).
    """
    alpha = segment_softmax(Y @ queries.T, groups, n_groups)
    weighted = alpha[:, :, None] * Y[:, None, :]  # (n_rows, n_rel, k)
    S = Y.new_zeros((n_groups, queries.shape[0], Y.shape[1])).index_add(0, groups, weighted)
    return S, alpha


def diagonal_log_probs(S: torch.Tensor, R: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Eq. 12 per query: log softmax(R s^(r) + d)[r] for each group and relation r.

    S: (n_groups, n_rel, k); R: (n_rel, k); d: (n_rel,). Returns (n_groups, n_rel).
    """
    logits = S @ R.T + d  # (n_groups, n_rel query, n_rel output)
    log_probs = F.log_softmax(logits, dim=-1)
    return torch.diagonal(log_probs, dim1=1, dim2=2)
