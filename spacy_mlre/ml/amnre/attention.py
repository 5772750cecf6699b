"""Selective attention over the sentences of a bag (AMNRE Eq. 7-10, Lin et al.,
2016) and the per-query relation scores of Eq. 11-12, for many bags at once.

Sentences are rows of one matrix; `groups` says which bag (or bag-and-language
for the language-individual attention) each row belongs to. Every relation is
used as a query, so one call gives, per group, the log-probability of each
relation r computed from its own representation s^(r): the "diagonal"
log p(r | s^(r)). Training picks the gold relation's entry (the gold relation
is the query), inference uses every entry, exactly as the paper does it.

s^(r) = sum_i alpha_ir y_i is never built: R s^(r) = sum_i alpha_ir (R y_i), so
the rows are projected once to the outputs and only (rows, n_rel, n_rel)
values are weighted, not (rows, n_rel, k). With k = 230 and 18 relations that
is 13x less memory; prediction, where every pair is its own bag, needed 2 GB
for 32,000 pairs before.
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


def attention_log_probs(scores: torch.Tensor, proj: torch.Tensor, d: torch.Tensor, groups: torch.Tensor,
                        n_groups: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7-12: alpha = softmax over a group's rows of r^T y_i, and for every
    query r, log softmax(R s^(r) + d)[r] with s^(r) = sum_i alpha_ir y_i.

    scores: (n_rows, n_rel) r^T y_i for every query; proj: (n_rows, n_rel) R y_i;
    d: (n_rel,) or (n_groups, n_rel). Returns (n_groups, n_rel) and alpha.
    """
    alpha = segment_softmax(scores, groups, n_groups)
    n_rel = scores.shape[1]
    logits = proj.new_zeros((n_groups, n_rel, proj.shape[1])).index_add(0, groups, alpha[:, :, None] * proj[:, None, :])
    logits = logits + (d[None, None, :] if d.dim() == 1 else d[:, None, :])
    return torch.diagonal(F.log_softmax(logits, dim=-1), dim1=1, dim2=2), alpha
