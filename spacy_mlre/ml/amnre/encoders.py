"""Sentence encoders of AMNRE (paper section 3.1): word + two position
embeddings, then a CNN with max-pooling (Eq. 1-2) or a BiGRU (Eq. 3-4).

The input of one relation instance is its sentence's word vectors plus, per
token, embeddings of the relative distance to the head and to the tail. Many
entity pairs share a sentence, and a convolution is linear in its input, so
conv([w; p1; p2]) = conv_w(w) + conv_p([p1; p2]): the CNN convolves the word
part once per sentence and only the narrow position part once per pair, which
is exactly the paper's encoder at a fraction of the cost. The BiGRU is not
linear and runs once per pair.

The paper's instances are sentences; a doc here can be much longer. So a
pair's instance is its context window: the tokens within `context` of either
entity (0: the whole doc), and each pair costs O(window), not O(doc). In the
CNN the word convolution still runs once over the doc, so a window's first
and last tokens see their neighbours outside it (as a sentence's edge tokens
would see the next sentence); positions are zero outside the window. At
prediction the pairs go through in chunks, so a doc with thousands of pairs
needs a bounded amount of memory.
"""
from typing import Iterator, Optional, Tuple

import torch
from torch import nn

# floats of one chunk's (pairs, window, width) activations at prediction (64 MB)
CHUNK_FLOATS = 1 << 24


def relative_positions(starts: torch.Tensor, ends: torch.Tensor, tokens: torch.Tensor, max_position: int) -> torch.Tensor:
    """Ids of the distance of tokens (n_pairs, n) to each pair's span [start,
    end): negative before it, 0 inside, positive after, clipped to
    +-max_position and shifted to 0 .. 2 * max_position."""
    before = tokens - starts[:, None]
    after = tokens - (ends[:, None] - 1)
    dist = torch.where(tokens < starts[:, None], before, torch.where(tokens >= ends[:, None], after, torch.zeros_like(tokens)))
    return dist.clamp(-max_position, max_position) + max_position


def context_windows(lengths: torch.Tensor, head_spans: torch.Tensor, tail_spans: torch.Tensor,
                    context: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each pair's tokens (n_pairs, longest window), clipped into its doc, and
    the mask of those inside its window [first entity start - context, last
    entity end + context) within the doc (context 0: the whole doc)."""
    if context > 0:
        starts = (torch.minimum(head_spans[:, 0], tail_spans[:, 0]) - context).clamp(min=0)
        ends = torch.minimum(torch.maximum(head_spans[:, 1], tail_spans[:, 1]) + context, lengths)
    else:
        starts, ends = torch.zeros_like(lengths), lengths
    width = max(int((ends - starts).max()), 1) if lengths.shape[0] else 1
    tokens = starts[:, None] + torch.arange(width, device=lengths.device)[None, :]
    valid = tokens < ends[:, None]
    return torch.minimum(tokens, (lengths[:, None] - 1).clamp(min=0)), valid


def chunks(n_pairs: int, window: int, width: int) -> Iterator[slice]:
    """Slices of pairs: all at once with gradients (the graph keeps every
    chunk anyway), at most CHUNK_FLOATS activations each without."""
    size = n_pairs if torch.is_grad_enabled() else max(1, CHUNK_FLOATS // max(window * width, 1))
    for start in range(0, n_pairs, size):
        yield slice(start, min(start + size, n_pairs))


class PositionEmbedding(nn.Module):
    """Two k_p-wide embeddings of the distances to head and tail (Zeng et al., 2014)."""

    def __init__(self, width: int, max_position: int) -> None:
        super().__init__()
        self.max_position = max_position
        self.head = nn.Embedding(2 * max_position + 1, width)
        self.tail = nn.Embedding(2 * max_position + 1, width)

    def forward(self, head_spans: torch.Tensor, tail_spans: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        p1 = relative_positions(head_spans[:, 0], head_spans[:, 1], tokens, self.max_position)
        p2 = relative_positions(tail_spans[:, 0], tail_spans[:, 1], tokens, self.max_position)
        return torch.cat([self.head(p1), self.tail(p2)], dim=-1)


class CNNSentenceEncoder(nn.Module):
    """Eq. 1-2: window-m convolution to k_h filters, max over the tokens, tanh, dropout."""

    def __init__(self, word_width: int, position_width: int, hidden: int = 230, window: int = 3,
                 dropout: float = 0.5, max_position: int = 60, context: int = 0) -> None:
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"The CNN window must be odd (the paper's m = 3), got {window}.")
        self.positions = PositionEmbedding(position_width, max_position)
        self.conv_words = nn.Conv1d(word_width, hidden, window, padding=window // 2)
        self.conv_positions = nn.Conv1d(2 * position_width, hidden, window, padding=window // 2, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.width = hidden
        self.context = context

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, pair_sent: torch.Tensor,
                head_spans: torch.Tensor, tail_spans: torch.Tensor) -> torch.Tensor:
        """words: (n_sents, L, k_w) padded; lengths: (n_sents,); pair_sent: (n_pairs,)
        sentence of each pair; spans: (n_pairs, 2). Returns (n_pairs, k_h)."""
        if pair_sent.shape[0] == 0:
            return words.new_zeros((0, self.width))
        h_words = self.conv_words(words.transpose(1, 2)).transpose(1, 2)  # (n_sents, L, k_h)
        tokens, valid = context_windows(lengths[pair_sent], head_spans, tail_spans, self.context)
        out = []
        for rows in chunks(pair_sent.shape[0], tokens.shape[1], self.width):
            pos = self.positions(head_spans[rows], tail_spans[rows], tokens[rows])  # (n, W, 2 k_p)
            pos = pos * valid[rows, :, None]
            h = h_words[pair_sent[rows, None], tokens[rows]] + self.conv_positions(pos.transpose(1, 2)).transpose(1, 2)
            h = h.masked_fill(~valid[rows, :, None], float("-inf"))
            out.append(torch.tanh(h.max(dim=1).values))
        return self.dropout(torch.cat(out))


class BiGRUSentenceEncoder(nn.Module):
    """Eq. 3-4: bidirectional GRU, y = [forward state at the last token; backward state at the first]."""

    def __init__(self, word_width: int, position_width: int, hidden: int = 200,
                 dropout: float = 0.5, max_position: int = 60, context: int = 0) -> None:
        super().__init__()
        self.positions = PositionEmbedding(position_width, max_position)
        self.gru = nn.GRU(word_width + 2 * position_width, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.width = 2 * hidden
        self.context = context

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, pair_sent: torch.Tensor,
                head_spans: torch.Tensor, tail_spans: torch.Tensor) -> torch.Tensor:
        if pair_sent.shape[0] == 0:
            return words.new_zeros((0, self.width))
        tokens, valid = context_windows(lengths[pair_sent], head_spans, tail_spans, self.context)
        out = []
        for rows in chunks(pair_sent.shape[0], tokens.shape[1], words.shape[2] + self.width):
            x = torch.cat([words[pair_sent[rows, None], tokens[rows]],
                           self.positions(head_spans[rows], tail_spans[rows], tokens[rows])], dim=-1)
            packed = nn.utils.rnn.pack_padded_sequence(
                x, valid[rows].sum(1).clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, h_n = self.gru(packed)  # (2, n, hidden): final forward and backward states
            out.append(torch.cat([h_n[0], h_n[1]], dim=1))
        return self.dropout(torch.cat(out))


def build_sentence_encoder(kind: str, word_width: int, position_width: int, hidden: Optional[int],
                           window: int, dropout: float, max_position: int, context: int = 0) -> nn.Module:
    if kind == "cnn":
        return CNNSentenceEncoder(word_width, position_width, hidden or 230, window, dropout, max_position, context)
    if kind == "bigru":
        return BiGRUSentenceEncoder(word_width, position_width, hidden or 200, dropout, max_position, context)
    raise ValueError(f"Unknown sentence encoder {kind!r}: choose cnn or bigru.")
