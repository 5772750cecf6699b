"""Sentence encoders of AMNRE (paper section 3.1): word + two position
embeddings, then a CNN with max-pooling (Eq. 1-2) or a BiGRU (Eq. 3-4).

The input of one relation instance is its sentence's word vectors plus, per
token, embeddings of the relative distance to the head and to the tail. Many
entity pairs share a sentence, and a convolution is linear in its input, so
conv([w; p1; p2]) = conv_w(w) + conv_p([p1; p2]): the CNN convolves the word
part once per sentence and only the narrow position part once per pair, which
is exactly the paper's encoder at a fraction of the cost. The BiGRU is not
linear and runs once per pair.
"""
from typing import Optional

import torch
from torch import nn


def relative_positions(starts: torch.Tensor, ends: torch.Tensor, length: int, max_position: int) -> torch.Tensor:
    """(n_pairs, length) ids of each token's distance to a span [start, end):
    negative before it, 0 inside, positive after, clipped to +-max_position and
    shifted to 0 .. 2 * max_position."""
    idx = torch.arange(length, device=starts.device)[None, :]
    before = idx - starts[:, None]
    after = idx - (ends[:, None] - 1)
    dist = torch.where(idx < starts[:, None], before, torch.where(idx >= ends[:, None], after, torch.zeros_like(idx)))
    return dist.clamp(-max_position, max_position) + max_position


class PositionEmbedding(nn.Module):
    """Two k_p-wide embeddings of the distances to head and tail (Zeng et al., 2014)."""

    def __init__(self, width: int, max_position: int) -> None:
        super().__init__()
        self.max_position = max_position
        self.head = nn.Embedding(2 * max_position + 1, width)
        self.tail = nn.Embedding(2 * max_position + 1, width)

    def forward(self, head_spans: torch.Tensor, tail_spans: torch.Tensor, length: int) -> torch.Tensor:
        p1 = relative_positions(head_spans[:, 0], head_spans[:, 1], length, self.max_position)
        p2 = relative_positions(tail_spans[:, 0], tail_spans[:, 1], length, self.max_position)
        return torch.cat([self.head(p1), self.tail(p2)], dim=-1)


class CNNSentenceEncoder(nn.Module):
    """Eq. 1-2: window-m convolution to k_h filters, max over the tokens, tanh, dropout."""

    def __init__(self, word_width: int, position_width: int, hidden: int = 230, window: int = 3,
                 dropout: float = 0.5, max_position: int = 60) -> None:
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"The CNN window must be odd (the paper's m = 3), got {window}.")
        self.positions = PositionEmbedding(position_width, max_position)
        self.conv_words = nn.Conv1d(word_width, hidden, window, padding=window // 2)
        self.conv_positions = nn.Conv1d(2 * position_width, hidden, window, padding=window // 2, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.width = hidden

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, pair_sent: torch.Tensor,
                head_spans: torch.Tensor, tail_spans: torch.Tensor) -> torch.Tensor:
        """words: (n_sents, L, k_w) padded; lengths: (n_sents,); pair_sent: (n_pairs,)
        sentence of each pair; spans: (n_pairs, 2). Returns (n_pairs, k_h)."""
        if pair_sent.shape[0] == 0:
            return words.new_zeros((0, self.width))
        length = words.shape[1]
        h_words = self.conv_words(words.transpose(1, 2))  # (n_sents, k_h, L)
        pos = self.positions(head_spans, tail_spans, length)  # (n_pairs, L, 2 k_p)
        h = h_words[pair_sent] + self.conv_positions(pos.transpose(1, 2))
        pad = torch.arange(length, device=h.device)[None, :] >= lengths[pair_sent][:, None]
        h = h.masked_fill(pad[:, None, :], float("-inf"))
        return self.dropout(torch.tanh(h.max(dim=2).values))


class BiGRUSentenceEncoder(nn.Module):
    """Eq. 3-4: bidirectional GRU, y = [forward state at the last token; backward state at the first]."""

    def __init__(self, word_width: int, position_width: int, hidden: int = 200,
                 dropout: float = 0.5, max_position: int = 60) -> None:
        super().__init__()
        self.positions = PositionEmbedding(position_width, max_position)
        self.gru = nn.GRU(word_width + 2 * position_width, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.width = 2 * hidden

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, pair_sent: torch.Tensor,
                head_spans: torch.Tensor, tail_spans: torch.Tensor) -> torch.Tensor:
        if pair_sent.shape[0] == 0:
            return words.new_zeros((0, self.width))
        length = words.shape[1]
        x = torch.cat([words[pair_sent], self.positions(head_spans, tail_spans, length)], dim=-1)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths[pair_sent].clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, h_n = self.gru(packed)  # (2, n_pairs, hidden): final forward and backward states
        return self.dropout(torch.cat([h_n[0], h_n[1]], dim=1))


def build_sentence_encoder(kind: str, word_width: int, position_width: int, hidden: Optional[int],
                           window: int, dropout: float, max_position: int) -> nn.Module:
    if kind == "cnn":
        return CNNSentenceEncoder(word_width, position_width, hidden or 230, window, dropout, max_position)
    if kind == "bigru":
        return BiGRUSentenceEncoder(word_width, position_width, hidden or 200, dropout, max_position)
    raise ValueError(f"Unknown sentence encoder {kind!r}: choose cnn or bigru.")
