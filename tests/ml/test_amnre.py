"""spacy_mlre.AMNRE.v1: attention and penalty against literal references, the
discriminator's gradient, overfitting bags, bag-level prediction, save/load and
the config variants."""
import numpy
import pytest
import spacy
import srsly
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, registry
from thinc.api import Adam

from spacy_mlre.bags import pair_bag_keys, predict_bags
from spacy_mlre.corpus.reader import make_input_doc

from mlre_testing import ROOT, make_doc

torch = pytest.importorskip("torch")

from spacy_mlre.ml.amnre.adversarial import grad_reverse, language_targets, orthogonality_penalty  # noqa: E402
from spacy_mlre.ml.amnre.net import AMNRENet  # noqa: E402
from spacy_mlre.ml.models.amnre import get_net  # noqa: E402
from spacy_mlre.ml.amnre.attention import attention_log_probs, segment_softmax  # noqa: E402
from spacy_mlre.ml.amnre import encoders as sentence_encoders  # noqa: E402
from spacy_mlre.ml.amnre.encoders import build_sentence_encoder, relative_positions  # noqa: E402

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These networks are tiny: on one thread they train ten times faster than
    on two of a busy machine (the overfitting fixture took minutes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    parts = net.regularizers(ind, cons, sent_lang[pair_sent], n_bags)
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
    parts = net.regularizers(ind, cons, sent_lang[pair_sent], n_bags)
    assert set(parts) == {"penalty"}
    penalty = 0.02 * orthogonality_penalty(ind, cons, sent_lang[pair_sent], [0, 1]) / n_bags
    assert torch.allclose(_consistent_grads(net, sum(parts.values())), _consistent_grads(net, penalty))
    assert set(AMNRENet(_net_cfg(adversarial="alternating")).regularizers(ind, cons, sent_lang[pair_sent], n_bags)) == {"penalty"}


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
    parts = net.regularizers(ind, cons, sent_lang[pair_sent], B)
    (-(dist * lp).sum(dim=1).mean() + sum(parts.values())).backward()
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
    pipe = nlp.get_pipe("relation_extractor")
    for _ in range(60):
        for batch in _batcher()(examples):
            pipe.update(batch, sgd=optimizer)  # with the optimizer: the adversarial steps run
    return nlp, refs


def _batcher():
    return registry.batchers.get("spacy_mlre.bag_batcher.v1")(size=3, key_sources=["kb", "text"])


def _examples(nlp):
    return [Example(make_input_doc(d, gold_ents=True), d) for d in _bag_docs(nlp)]


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


# --- the training contract: forward, loss hook, backprop, adversarial steps ----------


def _trained_pipe(steps=2, **model):
    """A small AMNRE pipe after `steps` passes over the bag docs (so every
    weight, the Adams' state included, has moved from its initial value)."""
    fix_random_seed(0)
    nlp = _amnre_nlp(**model)
    examples = _examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    pipe = nlp.get_pipe("relation_extractor")
    for _ in range(steps):
        for batch in _batcher()(examples):
            pipe.update(batch, sgd=optimizer)
    return nlp, pipe, examples


def _pipe_inputs(pipe, examples):
    docs = [eg.predicted for eg in examples]
    return docs, pipe.get_candidates(docs)


def _weights(model):
    """Every thinc parameter and every tensor of the torch network, copied."""
    out = {}
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                out[(node.id, name)] = numpy.array(node.get_param(name), copy=True)
    for name, value in get_net(model).state_dict().items():
        out[("net", name)] = value.detach().clone().numpy()
    return out


def _grads(model):
    """Every thinc and torch gradient (zeros where none)."""
    out = {}
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                grad = node.get_grad(name) if node.has_grad(name) else numpy.zeros_like(node.get_param(name))
                out[(node.id, name)] = numpy.array(grad, copy=True)
    for name, p in get_net(model).named_parameters():
        out[("net", name)] = numpy.zeros(tuple(p.shape), dtype="float32") if p.grad is None else p.grad.clone().numpy()
    return out


def _zero_grads(model):
    for node in model.walk():
        for name in node.param_names:
            if node.has_grad(name):
                node.set_grad(name, numpy.zeros_like(node.get_grad(name)))
    for p in get_net(model).parameters():
        p.grad = None


def _assert_same(a, b, **tolerance):
    assert a.keys() == b.keys()
    for key in a:
        numpy.testing.assert_allclose(a[key], b[key], err_msg=str(key), **tolerance)


@pytest.mark.parametrize("adversarial", ["alternating", "reversal"])
def test_update_without_optimizer_changes_no_weight(adversarial):
    """update(sgd=None) computes gradients only: no adversarial Adam step, no
    step inside the forward pass. With an optimizer, every part moves (the
    discriminator in alternating mode only through the adversarial steps)."""
    nlp, pipe, examples = _trained_pipe(1, adversarial=adversarial)
    before = _weights(pipe.model)
    losses = pipe.update(examples, sgd=None)
    assert losses["relation_extractor"] > 0
    _assert_same(_weights(pipe.model), before, rtol=0, atol=0)
    grads = _grads(pipe.model)
    assert any(numpy.abs(g).sum() > 0 for key, g in grads.items() if key[0] == "net")
    assert any(numpy.abs(g).sum() > 0 for key, g in grads.items() if key[0] != "net")  # the embedding too
    pipe.update(examples, sgd=Adam(0.01))
    after = _weights(pipe.model)
    for prefix in ("discriminator.", "consistent.", "individual.", "cons_R"):
        assert any(not numpy.array_equal(after[k], before[k]) for k in before if k[0] == "net" and k[1].startswith(prefix)), prefix


def test_adversarial_steps_keep_the_accumulated_gradient():
    """Steps of the adversarial Adams between two accumulating updates leave the
    extraction gradient that thinc's optimizer will read as it was."""
    nlp, pipe, examples = _trained_pipe(1)
    pipe.update(examples, sgd=None)
    grads = _grads(pipe.model)
    before = _weights(pipe.model)
    losses = pipe.model.attrs["auxiliary_update"](pipe.model, _pipe_inputs(pipe, examples))
    assert set(losses) == {"discriminator", "fool"} and pipe.model.attrs["last_losses"]["fool"] == losses["fool"]
    after = _weights(pipe.model)
    assert any(not numpy.array_equal(after[k], before[k]) for k in before if k[1].startswith("consistent."))
    _assert_same(_grads(pipe.model), grads, rtol=0, atol=0)


def test_nlp_update_takes_the_adversarial_steps():
    nlp, pipe, examples = _trained_pipe(1)
    before = _weights(pipe.model)
    nlp.update(examples, sgd=Adam(0.01))
    after = _weights(pipe.model)
    assert any(not numpy.array_equal(after[k], before[k]) for k in before if k[1].startswith("discriminator."))


def _bag_keys(pipe, X):
    from spacy_mlre.ml.models.amnre import candidate_bag_keys

    return candidate_bag_keys(X[0], X[1], pipe.model.attrs["bag_keys"])


def _old_loss_backward(model, X, targets, weights):
    """The loss AMNRE's backprop computed itself before the hook, written out
    in torch: Eq. 13 on the batch's bags (the pairs' target distributions
    averaged by their weights, each bag weighing its kept pairs' mean weight,
    normalised), + 0.02 * Eq. 17 / n_bags, + in reversal mode the discriminator
    loss through gradient reversal; backward through the net and the embedding."""
    from spacy_mlre.ml.losses import target_distribution
    from spacy_mlre.ml.models.amnre import _tensors, candidate_bag_keys

    docs, cands = X
    net = get_net(model)
    keys = candidate_bag_keys(docs, cands, model.attrs["bag_keys"])
    uniq = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    pair_bag, n_bags = torch.tensor([uniq[k] for k in keys]), len(uniq)
    words, lengths_t, sent_lang, pair_sent, heads, tails, bp_embed, lengths = _tensors(model, docs, cands, True)
    net.train(True)
    bag_lp, ind, cons = net(words, lengths_t, sent_lang, pair_sent, heads, tails, pair_bag, n_bags)
    dist, weight = torch.as_tensor(target_distribution(targets)), torch.as_tensor(weights)
    bag_w = torch.zeros(n_bags).index_add(0, pair_bag, weight)
    bag_dist = torch.zeros(n_bags, dist.shape[1]).index_add(0, pair_bag, weight[:, None] * dist) / bag_w.clamp(min=1e-12)[:, None]
    kept = torch.zeros(n_bags).index_add(0, pair_bag, (weight > 0).float())
    bag_w = torch.where(kept > 0, bag_w / kept.clamp(min=1), torch.zeros_like(bag_w))
    bag_w = bag_w / bag_w.sum()
    nre = -(bag_w * (bag_dist * bag_lp).sum(dim=1)).sum()
    pair_lang = sent_lang[pair_sent]
    penalty = 0.02 * orthogonality_penalty(ind, cons, pair_lang, range(len(net.cfg["langs"]))) / n_bags
    loss = nre + penalty
    if net.cfg["adversarial"] == "reversal":
        loss = loss + net.discriminator_loss(grad_reverse(cons, net.cfg["adversarial_weight"]), pair_lang)
    loss.backward()
    bp_embed([model.ops.asarray2f(words.grad[i, :n].numpy()) for i, n in enumerate(lengths)])
    return nre.item(), penalty.item()


@pytest.mark.parametrize("adversarial", ["alternating", "reversal"])
def test_loss_hook_gradient_equals_the_bag_loss_written_out(adversarial):
    """backprop(the hook's dY) gives every parameter the gradient of the loss
    AMNRE computed and backpropagated itself before (one pair dropped, and no-
    relation pairs weighted by 0.5, as the pipe's negative weighting and
    sampling would); the reported loss is Eq. 13 + the penalty."""
    from spacy_mlre.ml.losses import row_weights

    nlp, pipe, examples = _trained_pipe(1, adversarial=adversarial, discriminator_dropout=0.0)
    model = pipe.model
    X = _pipe_inputs(pipe, examples)
    targets = pipe.get_targets(examples, X)
    weights = row_weights(targets, negative_weight=0.5)
    weights[int(numpy.nonzero(~targets.any(axis=1))[0][0])] = 0.0
    assert len(set(_bag_keys(pipe, X))) < X[1].n_pairs  # some bags hold several pairs
    _zero_grads(model)
    Y, backprop = model.begin_update(X)
    loss, dY = model.attrs["get_loss"](model, X, Y, targets, weights, False)
    assert dY.shape == Y.shape
    backprop(dY)
    hooked = _grads(model)
    _zero_grads(model)
    nre, penalty = _old_loss_backward(model, X, targets, weights)
    assert model.attrs["last_losses"]["nre"] == pytest.approx(nre, rel=1e-5)
    assert loss == pytest.approx(nre + penalty, rel=1e-5)
    _assert_same(hooked, _grads(model), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="multi_label = false"):
        model.attrs["get_loss"](model, X, Y, targets, weights, True)


def _finite_difference(objective, array, index, eps=1e-3) -> float:
    value = float(array[index])
    array[index] = value + eps
    up = objective()
    array[index] = value - eps
    down = objective()
    array[index] = value
    return (up - down) / (2 * eps)


def test_backprop_takes_a_gradient_of_the_outputs_shape():
    """backprop(dY) is the vector-Jacobian product of the forward pass: zeros
    give no gradient (no regularizers here), and a random dY's gradient
    matches finite differences of sum(dY * Y) in the network and the
    embedding (the BiGRU: the CNN's max-pooling has kinks)."""
    nlp, pipe, examples = _trained_pipe(1, adversarial=None, orthogonality=0, encoder="bigru", hidden_width=8)
    model = pipe.model
    X = _pipe_inputs(pipe, examples)
    _zero_grads(model)
    Y, backprop = model.begin_update(X)
    assert Y.shape == (X[1].n_pairs, len(pipe.labels) + 1)
    assert backprop(model.ops.alloc2f(*Y.shape)) is X
    assert all(not numpy.abs(g).any() for g in _grads(model).values())
    dY = numpy.random.RandomState(0).normal(size=Y.shape)
    _zero_grads(model)
    Y, backprop = model.begin_update(X)
    backprop(model.ops.asarray2f(dY.astype("float32")))
    grads = _grads(model)

    def objective() -> float:
        return float((model.begin_update(X)[0] * dY).sum())

    params = {("net", n): p.data.view(-1) for n, p in get_net(model).named_parameters()}
    names = ["cons_R", "cons_queries", "consistent.0.gru.weight_hh_l0", "individual.1.gru.weight_ih_l0"]
    checked = [("net", n) for n in names]
    for node in model.walk():
        if node.name == "layernorm":
            params.update({(node.id, n): node.get_param(n).reshape(-1) for n in ("G", "b")})
            checked += [(node.id, "G"), (node.id, "b")]
    assert len(checked) == 6
    for key in checked:
        grad = grads[key].reshape(-1)
        for i in numpy.argsort(-numpy.abs(grad))[:2]:
            assert abs(grad[i]) > 0.1
            assert _finite_difference(objective, params[key], i) == pytest.approx(float(grad[i]), rel=2e-2, abs=1e-3), (key, i)


def _train_steps(nlp, examples, steps, optimizer):
    """Per update: the pipe's loss and the NRE, discriminator and fool losses."""
    pipe = nlp.get_pipe("relation_extractor")
    out = []
    for _ in range(steps):
        for batch in _batcher()(examples):
            loss = pipe.update(batch, sgd=optimizer)["relation_extractor"]
            out.append([loss] + [pipe.model.attrs["last_losses"][k] for k in ("nre", "discriminator", "fool")])
    return numpy.array(out)


def _resume(nlp, examples):
    fix_random_seed(1)
    return _train_steps(nlp, examples, 2, Adam(0.01))


def test_training_resumes_exactly_after_save_and_load(tmp_path):
    """Save after some steps, load into a new pipeline, train on with a fresh
    optimizer and the same seeds: the same losses as training on without the
    round trip, because the adversarial Adams' state is saved with the model.
    Without it (a pipeline saved before it was), the Adams start fresh."""
    from spacy_mlre.ml.models.amnre import AMNREShim

    nlp, pipe, examples = _trained_pipe(2, adversarial_learn_rate=0.01)
    data = nlp.to_bytes()
    nlp.to_disk(tmp_path / "p")
    continued = _resume(nlp, examples)
    assert numpy.isfinite(continued).all()
    from_bytes = _amnre_nlp(adversarial_learn_rate=0.01).from_bytes(data)
    numpy.testing.assert_allclose(_resume(from_bytes, examples), continued, rtol=1e-5, atol=1e-6)
    from_disk = spacy.load(tmp_path / "p")
    numpy.testing.assert_allclose(_resume(from_disk, examples), continued, rtol=1e-5, atol=1e-6)

    old = _amnre_nlp(adversarial_learn_rate=0.01).from_bytes(data)
    shim = old.get_pipe("relation_extractor").model.shims[0]
    msg = srsly.msgpack_loads(shim.to_bytes())
    assert "adversarial_optimizers" in msg
    del msg["adversarial_optimizers"]
    loaded = AMNREShim(None).from_bytes(srsly.msgpack_dumps(msg))
    assert loaded._model._optimizers is None
    shim._model.load_adversarial_state(None)
    fresh = _resume(old, examples)
    assert not numpy.allclose(fresh[:, 2:], continued[:, 2:], rtol=1e-4, atol=1e-5)


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
