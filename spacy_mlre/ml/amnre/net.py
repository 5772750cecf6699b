"""The AMNRE network (paper section 3) as one torch module.

Per language j an individual encoder E^I_j and a consistent encoder E^C_j
(Eq. 6); language-individual attention over a bag's sentences of language j
with per-language relation queries r_j (Eq. 7-8) and language-consistent
attention over all the bag's sentences with shared queries r-bar (Eq. 9-10);
log p(r|T) = log p(r|s-bar) + sum_j log p(r|s_j) (Eq. 11-12). A discriminator
predicts the language of consistent embeddings (Eq. 14) and is played against
the consistent encoders (Eq. 16), either by the paper's alternating updates or
by gradient reversal; the orthogonality penalty (Eq. 17) pushes individual and
consistent spaces apart.

Switches for the paper's ablations and baselines: `individual` / `consistent`
(Joint and the mono-lingual model use individual only), `share_relations`
(the Share baseline: one set of relation queries and matrices for every
language), `share_encoders` (MNRE-style: one encoder per language whose
embedding feeds both attentions), `adversarial` null (noA), `orthogonality` 0 (noO).

Eq. 13, the extraction loss, reads the gold relations, so it is not here but
in the model's loss hook (ml/models/amnre.py, `amnre_loss`); the network
gives log p(r|T), the regularizers that need no targets, and the
alternating adversarial steps with their two Adams.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .adversarial import OBJECTIVES, Discriminator, grad_reverse, language_targets, orthogonality_penalty, soft_cross_entropy
from .attention import attention_log_probs
from .encoders import build_sentence_encoder

ADVERSARIAL = (None, "alternating", "reversal")


class AMNRENet(nn.Module):
    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        if cfg["adversarial"] not in ADVERSARIAL:
            raise ValueError(f"adversarial must be null, 'alternating' or 'reversal', got {cfg['adversarial']!r}.")
        self.cfg.setdefault("adversarial_objective", "flip")
        self.cfg.setdefault("discriminator_smoothing", 0.1)
        self.cfg.setdefault("orthogonality_normalize", True)
        self.cfg.setdefault("context_window", 0)  # pipelines saved before the window encoded whole docs
        if self.cfg["adversarial_objective"] not in OBJECTIVES:
            raise ValueError(f"adversarial_objective must be one of {list(OBJECTIVES)}, got {self.cfg['adversarial_objective']!r}.")
        if not (cfg["individual"] or cfg["consistent"]):
            raise ValueError("AMNRE needs the individual or the consistent part (or both).")
        if cfg["adversarial"] and not cfg["consistent"]:
            raise ValueError("Adversarial training acts on the consistent encoders: set consistent = true.")
        if cfg["adversarial"] and cfg["share_encoders"]:
            raise ValueError("share_encoders (MNRE-style) has no separate consistent encoders to train adversarially.")
        n_langs, n_rel = len(cfg["langs"]), cfg["n_rel"]

        def encoders() -> nn.ModuleList:
            return nn.ModuleList([
                build_sentence_encoder(cfg["encoder"], cfg["word_width"], cfg["position_width"], cfg["hidden_width"],
                                       cfg["window"], cfg["dropout"], cfg["max_position"], self.cfg["context_window"])
                for _ in range(n_langs)
            ])

        self.individual = encoders() if cfg["individual"] or cfg["share_encoders"] else None
        self.consistent = encoders() if cfg["consistent"] and not cfg["share_encoders"] else None
        width = (self.individual or self.consistent)[0].width
        self.width = width
        n_rel_sets = 1 if cfg["share_relations"] else n_langs
        if cfg["individual"]:
            self.ind_queries = nn.Parameter(torch.empty(n_rel_sets, n_rel, width))
            self.ind_R = nn.Parameter(torch.empty(n_rel_sets, n_rel, width))
            self.ind_d = nn.Parameter(torch.zeros(n_rel_sets, n_rel))
            for p in (self.ind_queries, self.ind_R):
                nn.init.xavier_uniform_(p.view(-1, width))
        if cfg["consistent"]:
            self.cons_queries = nn.Parameter(torch.empty(n_rel, width))
            self.cons_R = nn.Parameter(torch.empty(n_rel, width))
            self.cons_d = nn.Parameter(torch.zeros(n_rel))
            nn.init.xavier_uniform_(self.cons_queries)
            nn.init.xavier_uniform_(self.cons_R)
        self.discriminator = (
            Discriminator(width, n_langs, cfg["discriminator_width"], cfg["discriminator_dropout"])
            if cfg["adversarial"] else None
        )
        self._optimizers: Optional[Tuple[torch.optim.Optimizer, torch.optim.Optimizer]] = None

    # encoders ---------------------------------------------------------------

    def _encode(self, encoders: nn.ModuleList, words, lengths, sent_lang, pair_sent, heads, tails) -> torch.Tensor:
        """Each pair through the encoder of its sentence's language."""
        pair_lang = sent_lang[pair_sent]
        out = words.new_zeros((pair_sent.shape[0], self.width))
        for j in torch.unique(pair_lang).tolist():
            sents = torch.nonzero(sent_lang == j).view(-1)
            local = torch.full_like(sent_lang, -1)
            local[sents] = torch.arange(sents.shape[0], device=sents.device)
            rows = torch.nonzero(pair_lang == j).view(-1)
            y = encoders[j](words[sents], lengths[sents], local[pair_sent[rows]], heads[rows], tails[rows])
            out = out.index_copy(0, rows, y)
        return out

    def encode(self, words, lengths, sent_lang, pair_sent, heads, tails) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Individual and consistent embeddings of every pair (None where switched off)."""
        args = (words, lengths, sent_lang, pair_sent, heads, tails)
        ind = self._encode(self.individual, *args) if self.individual is not None else None
        if self.consistent is not None:
            cons = self._encode(self.consistent, *args)
        else:
            cons = ind if self.cfg["consistent"] else None
        return ind, cons

    # attention and prediction -------------------------------------------------

    def bag_log_probs(self, ind, cons, pair_lang, pair_bag, n_bags) -> torch.Tensor:
        """log p(r|T) of Eq. 11 for every bag and relation, each relation its own query."""
        n_rel = self.cfg["n_rel"]
        ref = ind if ind is not None else cons
        total = ref.new_zeros((n_bags, n_rel))
        if self.cfg["individual"]:
            n_langs = len(self.cfg["langs"])
            groups, group_index = torch.unique(pair_bag * n_langs + pair_lang, return_inverse=True)
            sets = torch.zeros_like(groups) if self.cfg["share_relations"] else groups % n_langs
            row_set = sets[group_index]
            rows = torch.arange(ind.shape[0], device=ind.device)
            scores = torch.einsum("pk,srk->psr", ind, self.ind_queries)[rows, row_set]
            proj = torch.einsum("pk,sok->pso", ind, self.ind_R)[rows, row_set]
            diag, _ = attention_log_probs(scores, proj, self.ind_d[sets], group_index, groups.shape[0])
            total = total.index_add(0, groups // n_langs, diag)
        if self.cfg["consistent"]:
            diag, _ = attention_log_probs(cons @ self.cons_queries.T, cons @ self.cons_R.T, self.cons_d, pair_bag, n_bags)
            total = total + diag
        return total

    def forward(self, words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags):
        ind, cons = self.encode(words, lengths, sent_lang, pair_sent, heads, tails)
        pair_lang = sent_lang[pair_sent]
        return self.bag_log_probs(ind, cons, pair_lang, pair_bag, n_bags), ind, cons

    # losses -----------------------------------------------------------------

    def penalty(self, ind, cons, pair_lang) -> torch.Tensor:
        """Eq. 17 (zero when an embedding is missing or the encoders are shared)."""
        if ind is None or self.consistent is None:
            return ind.new_zeros(()) if ind is not None else cons.new_zeros(())
        return orthogonality_penalty(ind, cons, pair_lang, range(len(self.cfg["langs"])),
                                     normalize=self.cfg["orthogonality_normalize"])

    def discriminator_loss(self, cons: torch.Tensor, pair_lang: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of D predicting each consistent embedding's language
        (L^D_adv), against targets smoothed by `discriminator_smoothing`."""
        targets = language_targets(pair_lang, len(self.cfg["langs"]), self.cfg["discriminator_smoothing"])
        return soft_cross_entropy(self.discriminator(cons), targets)

    def fool_loss(self, cons: torch.Tensor, pair_lang: torch.Tensor) -> torch.Tensor:
        """L^E_adv, the consistent encoders' objective against D: "flip" (the
        authors' code) is the cross-entropy towards the swapped smoothed targets;
        "eq16" is Eq. 16 as printed, mean log D(E^C(x))[j] (unbounded below)."""
        logits = self.discriminator(cons)
        if self.cfg["adversarial_objective"] == "eq16":
            return -F.cross_entropy(logits, pair_lang)
        targets = language_targets(pair_lang, len(self.cfg["langs"]), self.cfg["discriminator_smoothing"], flip=True)
        return soft_cross_entropy(logits, targets)

    def adversarial_optimizers(self) -> Tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """The Adams of the alternating game, the discriminator's and the
        consistent encoders', made on first use. They are part of the model's
        training state: the shim saves them with the weights."""
        if self._optimizers is None:
            lr = self.cfg["adversarial_learn_rate"]
            self._optimizers = (
                torch.optim.Adam(self.discriminator.parameters(), lr=lr),
                torch.optim.Adam(self.consistent.parameters(), lr=lr),
            )
        return self._optimizers

    def adversarial_state(self) -> Optional[Dict[str, Any]]:
        """The two Adams' state dicts, or None before the first adversarial step."""
        if self._optimizers is None:
            return None
        d_opt, e_opt = self._optimizers
        return {"discriminator": d_opt.state_dict(), "encoders": e_opt.state_dict()}

    def load_adversarial_state(self, state: Optional[Dict[str, Any]]) -> None:
        """Restore `adversarial_state()`; None starts the Adams fresh (a model
        saved before their state was saved, or never trained adversarially)."""
        self._optimizers = None
        if state is not None:
            d_opt, e_opt = self.adversarial_optimizers()
            d_opt.load_state_dict(state["discriminator"])
            e_opt.load_state_dict(state["encoders"])

    def adversarial_steps(self, words, lengths, sent_lang, pair_sent, heads, tails, n_pairs: int = 0,
                          generator: Optional[torch.Generator] = None) -> Dict[str, float]:
        """The paper's alternating updates before each extraction update (ratio
        1:1:5 = extraction : discriminator : encoder steps by default): D minimises
        L^D_adv on detached consistent embeddings, then the consistent encoders
        minimise L^E_adv (`fool_loss`), each with its own Adam. Gradients that
        the extraction loss has accumulated on the parameters are kept."""
        ratio = self.cfg["adversarial_ratio"]
        if n_pairs and pair_sent.shape[0] > n_pairs:
            pick = torch.randperm(pair_sent.shape[0], generator=generator)[:n_pairs]
            pair_sent, heads, tails = pair_sent[pick], heads[pick], tails[pick]
        pair_lang = sent_lang[pair_sent]
        d_opt, e_opt = self.adversarial_optimizers()
        args = (words, lengths, sent_lang, pair_sent, heads, tails)
        losses = {"discriminator": 0.0, "fool": 0.0}
        for _ in range(int(round(ratio[1] / ratio[0]))):
            self.consistent.eval()
            with torch.no_grad():
                cons = self._encode(self.consistent, *args)
            self.consistent.train()
            self.discriminator.train()
            loss = self.discriminator_loss(cons, pair_lang)
            grads = torch.autograd.grad(loss, list(self.discriminator.parameters()))
            _step(d_opt, self.discriminator.parameters(), grads)
            losses["discriminator"] = loss.item()
        for _ in range(int(round(ratio[2] / ratio[0]))):
            self.discriminator.eval()
            cons = self._encode(self.consistent, *args)
            loss = self.fool_loss(cons, pair_lang)
            grads = torch.autograd.grad(loss, list(self.consistent.parameters()), allow_unused=True)
            _step(e_opt, self.consistent.parameters(), grads)
            losses["fool"] = loss.item()
        self.discriminator.train()
        return losses

    def regularizers(self, ind, cons, pair_lang, n_bags: int) -> Dict[str, torch.Tensor]:
        """The terms of the extraction step that need no targets, added to
        Eq. 13 by the model's own backprop: lambda_3 * Eq. 17 / n_bags (the
        paper sums Eq. 13 and 17 over a batch; Eq. 13 is a weighted mean over
        the bags here, so Eq. 17, a sum over all the batch's pairs, is divided
        by all its bags, also those whose pairs negative sampling dropped from
        Eq. 13) and, in reversal mode, the discriminator loss through gradient
        reversal."""
        parts: Dict[str, torch.Tensor] = {}
        if self.cfg["orthogonality"]:
            parts["penalty"] = self.cfg["orthogonality"] * self.penalty(ind, cons, pair_lang) / max(n_bags, 1)
        if self.cfg["adversarial"] == "reversal":
            parts["discriminator"] = self.discriminator_loss(
                grad_reverse(cons, self.cfg["adversarial_weight"]), pair_lang
            )
        return parts


def _step(optimizer: torch.optim.Optimizer, params, grads: Sequence[Optional[torch.Tensor]]) -> None:
    """One step of `optimizer` on `grads`, leaving the parameters' own .grad
    (the extraction gradient thinc's optimizer reads, maybe accumulated) as it was."""
    params = list(params)
    kept = [p.grad for p in params]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.detach()
    optimizer.step()
    for p, g in zip(params, kept):
        p.grad = g
