"""spacy_mlre.AMNRE.v1: attention and penalty against literal references, the
discriminator's gradient, overfitting bags, bag-level prediction, save/load and
the config variants."""
import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, registry
from thinc.api import Adam

from spacy_mlre.bags import pair_bag_keys, predict_bags
from spacy_mlre.corpus.reader import make_input_doc

from mlre_testing import ROOT, make_doc

torch = pytest.importorskip("torch")

from spacy_mlre.ml.amnre.adversarial import grad_reverse, language_targets, orthogonality_penalty  # noqa: E402
from spacy_mlre.ml.amnre.net import AMNRENet  # noqa: E402
from spacy_mlre.ml.amnre.attention import attention_log_probs, segment_softmax  # noqa: E402
from spacy_mlre.ml.amnre import encoders as sentence_encoders  # noqa: E402
from spacy_mlre.ml.amnre.encoders import build_sentence_encoder, relative_positions  # noqa: E402

EMBED = {"@architectures": "spacy.MultiHashEmbed.v2", "width": 16, "rows": [500, 100, 100, 100],
         "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "include_static_vectors": False}


def _net_cfg(**kw):
    cfg = dict(langs=["en", "de"], n_rel=3, word_width=4, encoder="cnn", hidden_width=6, window=3, position_width=2,
               max_position=5, dropout=0.0, individual=True, consistent=True, share_encoders=False,
               share_relations=False, adversarial="reversal", adversarial_ratio=[1, 1, 5], adversarial_weight=0.5,
               adversarial_learn_rate=0.01, discriminator_width=8, discriminator_dropout=0.0, orthogonality=0.02)
    cfg.update(kw)
    return cfg


def _net_inputs():
    """Three sentences (en, de, en) and five pairs in three bags."""
    g = torch.Generator().manual_seed(0)
    words = torch.randn(3, 7, 4, generator=g)
    lengths = torch.tensor([7, 5, 6])
    sent_lang = torch.tensor([0, 1, 0])
    pair_sent = torch.tensor([0, 0, 1, 2, 2])
    heads = torch.tensor([[0, 1], [2, 4], [0, 2], [1, 2], [4, 5]])
    tails = torch.tensor([[2, 4], [0, 1], [3, 4], [4, 5], [0, 1]])
    pair_bag = torch.tensor([0, 1, 0, 0, 2])
    return words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, 3


# --- layers against literal references -----------------------------------------


def test_relative_positions():
    ids = relative_positions(torch.tensor([2]), torch.tensor([4]), torch.arange(7)[None, :], 3)
    assert ids.tolist() == [[-2 + 3, -1 + 3, 3, 3, 1 + 3, 2 + 3, 3 + 3]]


def _encoder_inputs(length=40, n_docs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, length // 2][:n_docs])
    words = torch.randn(n_docs, length, 4, generator=g)
    for i, n in enumerate(lengths.tolist()):
        words[i, n:] = 0.0  # padding is zero, as ops.pad gives it
    pair_sent = torch.tensor([0, 0, 0, 1][: 3 if n_docs == 1 else 4])
    heads = torch.tensor([[2, 4], [30, 31], [10, 12], [1, 2]])[: pair_sent.shape[0]]
    tails = torch.tensor([[6, 7], [35, 38], [3, 4], [17, 20]])[: pair_sent.shape[0]]  # pair 3 ends its doc
    return words, lengths, pair_sent, heads, tails


def _encoder(kind, context, seed=0):
    torch.manual_seed(seed)
    return build_sentence_encoder(kind, 4, 2, 6, 3, 0.0, 5, context).eval()


def test_cnn_encoder_is_the_papers_convolution_over_word_and_position_features():
    """With the window covering the doc: Eq. 1-2 literally, one Conv1d over
    [w; p1; p2] per pair, max over tokens, tanh."""
    words, lengths, pair_sent, heads, tails = _encoder_inputs(n_docs=1)
    enc = _encoder("cnn", 0)
    weight = torch.cat([enc.conv_words.weight, enc.conv_positions.weight], dim=1)
    with torch.no_grad():
        got = enc(words, lengths, pair_sent, heads, tails)
        for i in range(pair_sent.shape[0]):
            n = int(lengths[pair_sent[i]])
            pos = enc.positions(heads[i : i + 1], tails[i : i + 1], torch.arange(n)[None, :])[0]
            x = torch.cat([words[pair_sent[i], :n], pos], dim=1)
            h = torch.nn.functional.conv1d(x.T[None], weight, enc.conv_words.bias, padding=1)[0]
            assert torch.allclose(got[i], torch.tanh(h.max(dim=1).values), atol=1e-5)


@pytest.mark.parametrize("kind", ["cnn", "bigru"])
def test_encoding_of_a_doc_does_not_depend_on_the_batch(kind):
    """The second doc's pair alone equals it padded beside a longer doc (the
    padding's positions once leaked into the last token's convolution)."""
    words, lengths, pair_sent, heads, tails = _encoder_inputs()
    for seed in range(4):
        enc = _encoder(kind, 0, seed)
        with torch.no_grad():
            batch = enc(words, lengths, pair_sent, heads, tails)[3]
            alone = enc(words[1:2, :20], lengths[1:], torch.tensor([0]), heads[3:], tails[3:])[0]
        assert torch.allclose(batch, alone, atol=1e-5)


@pytest.mark.parametrize("kind", ["cnn", "bigru"])
def test_pair_encoding_only_reads_its_context_window(kind):
    """A pair's embedding changes with a word inside its window and not with
    words beyond it (the CNN's edge tokens also see one neighbour each side)."""
    words, lengths, pair_sent, heads, tails = _encoder_inputs(n_docs=1)
    context, reach = 3, 1 if kind == "cnn" else 0
    enc = _encoder(kind, context)
    with torch.no_grad():
        before = enc(words, lengths, pair_sent, heads, tails)
        far = words.clone()
        far[0, 7 + context + reach :] += 5.0  # pair 0: entities in 2..7, window 0..10
        assert torch.allclose(enc(far, lengths, pair_sent, heads, tails)[0], before[0], atol=1e-6)
        near = words.clone()
        near[0, 7 + context - 1] += 5.0
        assert not torch.allclose(enc(near, lengths, pair_sent, heads, tails)[0], before[0], atol=1e-3)
        whole = _encoder(kind, 0)(far, lengths, pair_sent, heads, tails)[0]
        assert not torch.allclose(whole, before[0], atol=1e-3)  # with context 0 the far words count


@pytest.mark.parametrize("kind", ["cnn", "bigru"])
def test_prediction_in_chunks_equals_one_pass(kind, monkeypatch):
    words, lengths, pair_sent, heads, tails = _encoder_inputs()
    enc = _encoder(kind, 4)
    one_pass = enc(words, lengths, pair_sent, heads, tails).detach()  # gradients on: one chunk
    monkeypatch.setattr(sentence_encoders, "CHUNK_FLOATS", 1)  # one pair per chunk
    with torch.no_grad():
        chunked = enc(words, lengths, pair_sent, heads, tails)
    assert torch.allclose(chunked, one_pass, atol=1e-5)


def _eq_7_to_12(Y, Q, R, d):
    """One bag, literally: alpha (Eq. 7 / 9), s^(r) (Eq. 8 / 10), log p(r|s^(r)) (Eq. 12)."""
    alpha = torch.softmax(Y @ Q.T, dim=0)  # (rows, n_rel)
    S = alpha.T @ Y  # (n_rel, k): row r is s^(r)
    return torch.diagonal(torch.log_softmax(S @ R.T + d, dim=-1))


def test_attention_equals_a_loop_reference():
    g = torch.Generator().manual_seed(1)
    Y, Q = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    R, d = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    groups = torch.tensor([1, 0, 1, 2, 1, 0])
    log_probs, alpha = attention_log_probs(Y @ Q.T, Y @ R.T, d, groups, 3)
    Yn, Qn, Rn, dn = (t.numpy().astype("float64") for t in (Y, Q, R, d))
    for b in range(3):
        rows = numpy.nonzero(groups.numpy() == b)[0]
        for r in range(3):
            e = numpy.exp(Yn[rows] @ Qn[r])  # Eq. 7 / 9
            a = e / e.sum()
            numpy.testing.assert_allclose(alpha[rows, r].numpy(), a, rtol=1e-5)
            s = (a[:, None] * Yn[rows]).sum(0)  # Eq. 8 / 10
            o = Rn @ s + dn  # Eq. 12 with query r, entry r
            ref = o[r] - numpy.log(numpy.exp(o).sum())
            assert float(log_probs[b, r]) == pytest.approx(ref, abs=1e-5)
    per_group_d = torch.stack([d, d + 1.0, d - 2.0])  # per-group biases (the languages' d_j)
    log_probs, _ = attention_log_probs(Y @ Q.T, Y @ R.T, per_group_d, groups, 3)
    for b in range(3):
        assert torch.allclose(log_probs[b], _eq_7_to_12(Y[groups == b], Q, R, per_group_d[b]), atol=1e-5)


def test_segment_softmax_is_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [1001.0], [-1000.0]])
    out = segment_softmax(scores, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(out[:, 0], torch.tensor([1 / (1 + numpy.e), numpy.e / (1 + numpy.e), 1.0]))


def test_orthogonality_penalty_equals_reference():
    g = torch.Generator().manual_seed(2)
    ind, cons = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    langs = torch.tensor([0, 1, 0, 0, 1])
    raw, normalized = 0.0, 0.0
    for j in (0, 1):
        rows = langs.numpy() == j
        I, C = ind.numpy()[rows], cons.numpy()[rows]
        raw += ((I.T @ C) ** 2).sum()  # ||I_j^T C_j||_F^2, Eq. 17 as printed
        I, C = I - I.mean(axis=0), C - C.mean(axis=0)  # the authors' code: centred, unit rows, mean
        I = I / numpy.linalg.norm(I, axis=1, keepdims=True)
        C = C / numpy.linalg.norm(C, axis=1, keepdims=True)
        normalized += ((I.T @ C) ** 2).mean()
    assert float(orthogonality_penalty(ind, cons, langs, [0, 1], normalize=False)) == pytest.approx(raw, rel=1e-5)
    assert float(orthogonality_penalty(ind, cons, langs, [0, 1])) == pytest.approx(normalized, rel=1e-5)
    # the normalised form ignores the embeddings' scale; the printed one grows with its square
    assert float(orthogonality_penalty(10 * ind, cons, langs, [0, 1])) == pytest.approx(normalized, rel=1e-4)
    assert float(orthogonality_penalty(10 * ind, cons, langs, [0, 1], normalize=False)) == pytest.approx(100 * raw, rel=1e-4)


def test_language_targets_smooth_and_flip():
    langs = torch.tensor([0, 1, 2])
    assert torch.allclose(language_targets(langs, 3, 0.1)[0], torch.tensor([0.9, 0.05, 0.05]))
    assert torch.allclose(language_targets(langs, 3, 0.1, flip=True)[1], torch.tensor([0.45, 0.1, 0.45]))
    # two languages: the authors' binary labels 0.9 / 0.1 and their flipped 1 - y
    assert torch.allclose(language_targets(torch.tensor([1]), 2, 0.1), torch.tensor([[0.1, 0.9]]))
    assert torch.allclose(language_targets(torch.tensor([1]), 2, 0.1, flip=True), torch.tensor([[0.9, 0.1]]))


def test_fool_loss_objectives():
    torch.manual_seed(0)
    net = AMNRENet(_net_cfg(adversarial="alternating"))
    cons = torch.randn(4, 6)
    langs = torch.tensor([0, 1, 1, 0])
    logits = net.discriminator(cons)
    flipped = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    ref = -(flipped * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    assert net.fool_loss(cons, langs).item() == pytest.approx(ref.item(), rel=1e-5)
    net.cfg["adversarial_objective"] = "eq16"  # mean log D[j], as printed
    ref = torch.log_softmax(logits, dim=-1)[torch.arange(4), langs].mean()
    assert net.fool_loss(cons, langs).item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="adversarial_objective"):
        AMNRENet(_net_cfg(adversarial_objective="minimax"))


def test_bag_log_probs_of_the_network_equal_eq_11():
    """log p(r|T) = log p(r|s-bar) + sum over the bag's languages of log p(r|s_j)."""
    torch.manual_seed(0)
    net = AMNRENet(_net_cfg())
    words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags = _net_inputs()
    net.eval()
    with torch.no_grad():
        total, ind, cons = net(words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags)
        pair_lang = sent_lang[pair_sent]
        for b in range(n_bags):
            rows = pair_bag == b
            expected = _eq_7_to_12(cons[rows], net.cons_queries, net.cons_R, net.cons_d)
            for j in torch.unique(pair_lang[rows]).tolist():
                sel = rows & (pair_lang == j)
                expected = expected + _eq_7_to_12(ind[sel], net.ind_queries[j], net.ind_R[j], net.ind_d[j])
            assert torch.allclose(total[b], expected, atol=1e-5)


# --- the discriminator's gradient --------------------------------------------------


def _consistent_grads(net, loss):
    params = list(net.consistent.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for p, g in zip(params, grads)])


def test_reversal_sends_the_discriminator_gradient_reversed_to_the_consistent_encoders():
    torch.manual_seed(0)
    net = AMNRENet(_net_cfg(adversarial="reversal", adversarial_weight=0.5))
    words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags = _net_inputs()
    total, ind, cons = net(words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags)
    dist = torch.eye(3)[[0, 2, 1]]
    parts = net.training_loss(total, dist, torch.ones(3) / 3, ind, cons, sent_lang[pair_sent])
    g_disc = _consistent_grads(net, parts["discriminator"])
    g_plain = _consistent_grads(net, net.discriminator_loss(cons, sent_lang[pair_sent]))
    assert g_plain.abs().sum() > 0
    assert torch.allclose(g_disc, -0.5 * g_plain, atol=1e-6)  # opposite sign, scaled by the weight
    # the individual encoders never see the discriminator
    ind_params = list(net.individual.parameters())
    grads = torch.autograd.grad(parts["discriminator"], ind_params, allow_unused=True, retain_graph=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads)
    # the discriminator itself descends its loss (no reversal on its own weights)
    d_params = list(net.discriminator.parameters())
    for a, b in zip(torch.autograd.grad(parts["discriminator"], d_params, retain_graph=True),
                    torch.autograd.grad(net.discriminator_loss(cons, sent_lang[pair_sent]), d_params)):
        assert torch.allclose(a, b)


def test_without_adversarial_training_no_discriminator_gradient():
    torch.manual_seed(0)
    net = AMNRENet(_net_cfg(adversarial=None))
    assert net.discriminator is None
    words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags = _net_inputs()
    total, ind, cons = net(words, lengths, sent_lang, pair_sent, heads, tails, pair_bag, n_bags)
    parts = net.training_loss(total, torch.eye(3)[[0, 2, 1]], torch.ones(3) / 3, ind, cons, sent_lang[pair_sent])
    assert set(parts) == {"nre", "penalty"}
    g_total = _consistent_grads(net, sum(parts.values()))
    g_ref = _consistent_grads(net, parts["nre"] + parts["penalty"])
    assert torch.allclose(g_total, g_ref)


def _disc_loss(net, args, pair_lang):
    net.eval()
    with torch.no_grad():
        return float(net.discriminator_loss(net._encode(net.consistent, *args), pair_lang))


def test_alternating_steps_move_encoders_against_and_discriminator_with_its_loss():
    torch.manual_seed(0)
    words, lengths, sent_lang, pair_sent, heads, tails, _, _ = _net_inputs()
    args = (words, lengths, sent_lang, pair_sent, heads, tails)
    pair_lang = sent_lang[pair_sent]

    net = AMNRENet(_net_cfg(adversarial="alternating", adversarial_ratio=[1, 0, 3]))  # encoder steps only
    d_before = [p.clone() for p in net.discriminator.parameters()]
    ind_before = [p.clone() for p in net.individual.parameters()]
    before = _disc_loss(net, args, pair_lang)
    net.adversarial_steps(*args)
    assert _disc_loss(net, args, pair_lang) > before  # the encoders made D worse
    assert all(torch.equal(a, b) for a, b in zip(d_before, net.discriminator.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ind_before, net.individual.parameters()))

    torch.manual_seed(0)
    net = AMNRENet(_net_cfg(adversarial="alternating", adversarial_ratio=[1, 3, 0]))  # discriminator steps only
    c_before = [p.clone() for p in net.consistent.parameters()]
    before = _disc_loss(net, args, pair_lang)
    net.adversarial_steps(*args)
    assert _disc_loss(net, args, pair_lang) < before
    assert all(torch.equal(a, b) for a, b in zip(c_before, net.consistent.parameters()))


_GRADIENT_SCRIPT = """
import hashlib, sys, torch
from spacy_mlre.ml.amnre.determinism import deterministic_torch
from spacy_mlre.ml.amnre.net import AMNRENet
torch.set_num_threads(2)
torch.manual_seed(0)
cfg = dict(langs=["en", "de"], n_rel=18, word_width=80, encoder="cnn", hidden_width=None, window=3,
           position_width=5, max_position=60, dropout=0.0, individual=True, consistent=True,
           share_encoders=False, share_relations=False, adversarial="reversal", adversarial_ratio=[1, 1, 5],
           adversarial_weight=1.0, adversarial_learn_rate=0.001, discriminator_width=256,
           discriminator_dropout=0.0, orthogonality=0.02)
net = AMNRENet(cfg)
g = torch.Generator().manual_seed(1)
S, L, P, B = 20, 120, 600, 400
words = torch.randn(S, L, 80, generator=g, requires_grad=True)
sent_lang = torch.randint(0, 2, (S,), generator=g)
pair_sent = torch.randint(0, S, (P,), generator=g)
h, t = torch.randint(0, L - 3, (P,), generator=g), torch.randint(0, L - 3, (P,), generator=g)
pair_bag = torch.randint(0, B, (P,), generator=g)
dist = torch.softmax(torch.randn(B, 18, generator=g), 1)
with deterministic_torch(sys.argv[1] == "on"):
    lp, ind, cons = net(words, torch.full((S,), L), sent_lang, pair_sent, torch.stack([h, h + 2], 1),
                        torch.stack([t, t + 2], 1), pair_bag, B)
    parts = net.training_loss(lp, dist, torch.full((B,), 1 / B), ind, cons, sent_lang[pair_sent])
    sum(parts.values()).backward()
grads = [p.grad.numpy().tobytes() for p in net.parameters() if p.grad is not None] + [words.grad.numpy().tobytes()]
print(hashlib.md5(b"".join(grads)).hexdigest())
"""


def test_training_gradients_are_the_same_in_every_process():
    """Two processes (different hash seeds, so different memory layouts) with two
    torch threads compute bit-identical gradients under deterministic_torch; without
    it, the indexing backward and the convolution summed in layout-dependent order
    here and two `spacy train` runs of AMNRE diverged."""
    import os
    import subprocess
    import sys

    def run(seed: int) -> str:
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        out = subprocess.run([sys.executable, "-c", _GRADIENT_SCRIPT, "on"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run(0) == run(1) == run(2)


# --- the model in the pipe -----------------------------------------------------------


def _bag_docs(nlp):
    """Two facts in English, German and Polish plus a one-language bag; kb ids key the bags."""
    from spacy.tokens import Span

    def doc(text, ents, rels, lang, kbs):
        d = make_doc(nlp, text, ents, rels, lang)
        d.ents = [Span(d, e.start, e.end, label=e.label, kb_id=kb) for e, kb in zip(d.ents, kbs)]
        return d

    return [
        doc("Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(0, 1, "works_for")], "en", ["A", "X"]),
        doc("Alice arbeitet bei Acme .", [(0, 5, "PER"), (19, 23, "ORG")], [(0, 1, "works_for")], "de", ["A", "X"]),
        doc("Alice pracuje w Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(0, 1, "works_for")], "pl", ["A", "X"]),
        doc("Acme is based in Paris .", [(0, 4, "ORG"), (17, 22, "LOC")], [(0, 1, "located_in")], "en", ["X", "P"]),
        doc("Acme hat seinen Sitz in Paris .", [(0, 4, "ORG"), (24, 29, "LOC")], [(0, 1, "located_in")], "de", ["X", "P"]),
        doc("Bob and Carol are siblings .", [(0, 3, "PER"), (8, 13, "PER")], [(0, 1, "sibling")], "en", ["B", "C"]),
    ]


def _amnre_nlp(**model):
    cfg = {"@architectures": "spacy_mlre.AMNRE.v1", "langs": ["en", "de", "pl"], "hidden_width": 24,
           "discriminator_width": 32, "dropout": 0.0, "bag_keys": ["kb", "text"], "embed": EMBED}
    cfg.update(model)
    nlp = spacy.blank("xx")
    nlp.add_pipe("relation_extractor", config={"model": cfg, "multi_label": False})
    return nlp


@pytest.fixture(scope="module")
def overfit():
    fix_random_seed(0)
    nlp = _amnre_nlp()
    refs = _bag_docs(nlp)
    examples = [Example(make_input_doc(d, gold_ents=True), d) for d in refs]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    batcher = registry.batchers.get("spacy_mlre.bag_batcher.v1")(size=3, key_sources=["kb", "text"])
    for _ in range(60):
        for batch in batcher(examples):
            nlp.update(batch, sgd=optimizer)
    return nlp, refs


def test_overfits_a_few_bags(overfit):
    nlp, refs = overfit
    pipe = nlp.get_pipe("relation_extractor")
    assert pipe.model.attrs["last_losses"]["nre"] < 0.1
    for ref, doc in zip(refs, nlp.pipe([make_input_doc(d) for d in refs])):
        assert [r.key for r in doc._.relations] == [r.key for r in ref._.relations]
    bags = {b.key: b for b in predict_bags(nlp, [make_input_doc(d) for d in refs], key_sources=["kb", "text"])}
    assert sorted(bags["A|X"].langs) == ["de", "en", "pl"] and len(bags["A|X"].members) == 3
    assert max(bags["A|X"].scores, key=bags["A|X"].scores.get) == "works_for"
    assert max(bags["X|P"].scores, key=bags["X|P"].scores.get) == "located_in"
    assert bags["X|A"].no_relation > 0.5  # the reverse direction is no fact
    assert sum(bags["A|X"].scores.values()) + bags["A|X"].no_relation == pytest.approx(1.0)


def test_single_doc_is_a_bag_of_one(overfit):
    nlp, refs = overfit
    doc = make_input_doc(refs[1])
    pipe = nlp.get_pipe("relation_extractor")
    cands, probs = pipe.predict([doc])
    (bag,) = [b for b in predict_bags(pipe, [doc], key_sources=["kb"]) if b.key == "A|X"]
    row = [i for i, (h, t) in enumerate(cands.pairs.tolist()) if tuple(cands.spans[h]) == (0, 1)][0]
    assert probs[row, pipe.labels.index("works_for")] == pytest.approx(bag.scores["works_for"], abs=1e-5)


def test_long_doc_with_many_entities(overfit):
    """A 10,000-token doc with 300 entities: each pair reads only its window,
    and a pair scores the same as in a doc of its window's tokens alone."""
    from spacy_mlre.cli.benchmark import synthetic_docs

    nlp, _ = overfit
    pipe = nlp.get_pipe("relation_extractor")
    (doc,) = synthetic_docs(nlp, 1, 300, 10000, lang="en")
    cands, probs = pipe.predict([doc])
    assert cands.n_pairs > 1000 and probs.shape == (cands.n_pairs, len(pipe.labels) + 1)
    h, t = cands.pairs[cands.n_pairs // 2]
    (hs, he), (ts, te) = cands.spans[h], cands.spans[t]
    context = pipe.model.attrs["amnre_cfg"]["context_window"]
    start, end = max(0, min(hs, ts) - context - 1), min(len(doc), max(he, te) + context + 1)  # +1: the CNN's reach
    part = doc[start:end].as_doc()
    part._.lang = "en"
    part_cands, part_probs = pipe.predict([part])
    rows = [i for i, (a, b) in enumerate(part_cands.pairs.tolist())
            if tuple(part_cands.spans[a]) == (hs - start, he - start) and tuple(part_cands.spans[b]) == (ts - start, te - start)]
    assert len(rows) == 1
    numpy.testing.assert_allclose(part_probs[rows[0]], probs[cands.n_pairs // 2], atol=1e-5)


def test_unseen_language_routes_like_the_first(overfit):
    nlp, refs = overfit
    doc = make_input_doc(refs[0])
    doc._.lang = "xh"
    assert [r.label for r in nlp(doc)._.relations] == ["works_for"]


def test_save_and_load(overfit, tmp_path):
    nlp, refs = overfit
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    docs = [make_input_doc(d) for d in refs]
    a = [[(r.key, round(r.score, 5)) for r in d._.relations] for d in nlp.pipe(docs)]
    b = [[(r.key, round(r.score, 5)) for r in d._.relations] for d in loaded.pipe([make_input_doc(d) for d in refs])]
    assert a == b
    again = _amnre_nlp().from_bytes(loaded.to_bytes())
    c = [[(r.key, round(r.score, 5)) for r in d._.relations] for d in again.pipe([make_input_doc(d) for d in refs])]
    assert c == a


VARIANTS = {
    "AMNRE": {},
    "bigru": {"encoder": "bigru", "hidden_width": 8},
    "reversal": {"adversarial": "reversal"},
    "noBoth": {"adversarial": None, "orthogonality": 0},
    "mono": {"consistent": False, "adversarial": None, "orthogonality": 0, "langs": ["en"]},
    "Share": {"consistent": False, "adversarial": None, "orthogonality": 0, "share_relations": True},
    "MNRE": {"share_encoders": True, "adversarial": None, "orthogonality": 0},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_variants_train(variant, tiny_corpus):
    """configs/amnre.cfg with each variant's overrides initializes and learns (the loss drops)."""
    from spacy_mlre.corpus.reader import RelationCorpus

    config = load_config(ROOT / "configs" / "amnre.cfg")
    model = config["components"]["relation_extractor"]["model"]
    model.update({"hidden_width": 16, "discriminator_width": 32, "langs": ["en", "de", "pl"], "embed": dict(EMBED)})
    model.update(VARIANTS[variant])
    fix_random_seed(0)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = list(RelationCorpus(tiny_corpus / "train.spacy")(nlp))[:12]
    optimizer = nlp.initialize(lambda: examples)
    batcher = registry.batchers.get("spacy_mlre.bag_batcher.v1")(size=6)
    losses = []
    for _ in range(8):
        total = {}
        for batch in batcher(examples):
            nlp.update(batch, sgd=optimizer, losses=total)
        losses.append(total["relation_extractor"])
    assert losses[-1] < losses[0]


def test_languages_from_data_include_one_met_after_the_first_ten():
    """langs = null: every training language gets its encoders, also one whose
    first doc comes after ten English ones (a corpus of two languages, one after
    the other); a missed language would silently use the first one's encoders."""
    nlp = _amnre_nlp(langs=None)
    en = [d for d in _bag_docs(nlp) if d._.lang == "en"]
    refs = (en * 4)[:10] + [d for d in _bag_docs(nlp) if d._.lang != "en"]
    nlp.initialize(lambda: [Example(make_input_doc(d), d) for d in refs])
    assert nlp.get_pipe("relation_extractor").model.attrs["amnre_cfg"]["langs"] == ["de", "en", "pl"]
