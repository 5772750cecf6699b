"""KernelMatrix.v1: hand-computed kernel scores, Eq. 9 against a literal
reference, gradients, padding, and overfitting EPO / SEO docs exactly."""
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Model
from thinc.types import Ragged

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.metrics.overlap import overlap_classes
from spacy_mlre.ml.inputs import Candidates
from spacy_mlre.ml.layers.attention import self_attention
from spacy_mlre.ml.layers.kernel import block_bce, build_block_index, kernel_scorer
from spacy_mlre.ml.models.kernel import build_kernel_matrix
from spacy_mlre.relations import relation_keys

from mlre_testing import ROOT, make_doc, numeric_grad


def _sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-numpy.asarray(x, dtype="float64")))


def _fixed_tok2vec(vectors):
    """A stand-in encoder returning the given token vectors (E_w) per doc."""
    def forward(model, docs, is_train):
        return [numpy.asarray(v, dtype="float32") for v in vectors], lambda d: []
    return Model("fixed_tok2vec", forward, dims={"nO": len(vectors[-1][0])})


def test_kernel_scores_and_block_means_hand_computed(nlp):
    """Doc "A1 A2 x B": head entity A = tokens 0-1, tail B = token 3, after a
    doc without entities (so batch offsets matter). E_w rows [1,0] [0,1] [1,1] [2,2]:
    the mean doc vector is [1,1], so E_b rows are [2,1] [1,2] [2,2] [3,3]; E_p = E_w.
    W_h = I for both relations; W_t0 = [[.5,0],[0,-1]], W_t1 = [[1,0],[0,0]]."""
    empty = nlp.make_doc("Nothing here .")
    doc = make_doc(nlp, "A1 A2 x B", [(0, 5, "X"), (8, 9, "Y")], [])
    E_w = [[1, 0], [0, 1], [1, 1], [2, 2]]
    model = build_kernel_matrix(_fixed_tok2vec([[[0, 0]] * 3, E_w]), width=2, projection_width=2,
                                doc_vector="mean", tail_attention=False, dropout=0.0, nO=2)
    pipe_like = spacy.blank("xx").add_pipe("relation_extractor")
    cands = pipe_like.get_candidates([empty, doc])
    assert cands.pairs.tolist() == [[0, 1], [1, 0]]  # A->B, B->A
    model.initialize(X=([empty, doc], cands))
    kernel = model.get_ref("kernel")
    kernel.set_param("W_h", numpy.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype="float32"))
    kernel.set_param("W_t", numpy.array([[0.5, 0, 1, 0], [0, -1, 0, 0]], dtype="float32"))
    logits, elements = model.predict(([empty, doc], cands))
    assert elements.lengths.tolist() == [2, 2]  # |A1 A2| x |B|, |B| x |A1 A2|
    # E_p W_t0 rows: [.5,0] [0,-1] . [1,-2];  E_p W_t1 rows: [1,0] [0,0] . [2,0]
    # A->B, relation 0: S = [2,1].[1,-2] = 0, [1,2].[1,-2] = -3
    # A->B, relation 1: S = [2,1].[2,0] = 4, [1,2].[2,0] = 2
    # B->A, relation 0: S = [3,3].[.5,0] = 1.5, [3,3].[0,-1] = -3
    # B->A, relation 1: S = [3,3].[1,0] = 3,   [3,3].[0,0] = 0
    blocks = [[[0, -3], [4, 2]], [[1.5, -3], [3, 0]]]
    mean = _sigmoid(blocks).mean(axis=2)  # the paper's pair score: mean of the block's probabilities
    numpy.testing.assert_allclose(mean, [[0.273713, 0.931406], [0.432500, 0.726287]], atol=1e-6)
    numpy.testing.assert_allclose(logits, numpy.log(mean / (1 - mean)), atol=1e-5)
    # the pipe's sigmoid turns them back into the block means
    numpy.testing.assert_allclose(_sigmoid(logits), mean, atol=1e-6)


def _random_case(seed=0):
    """Two docs (5 and 4 tokens), multi-token entities, pairs in both directions."""
    rng = numpy.random.default_rng(seed)
    cands = Candidates(
        spans=numpy.array([[0, 2], [3, 4], [4, 5], [1, 4], [0, 1]]),
        labels=numpy.zeros(5, dtype="uint64"),
        ent_lengths=numpy.array([3, 2]),
        pairs=numpy.array([[0, 1], [1, 0], [2, 0], [1, 2], [3, 4], [4, 3]]),
        pair_lengths=numpy.array([4, 2]),
    )
    lengths = [5, 4]
    Eb = rng.normal(size=(9, 3))
    Ep = rng.normal(size=(9, 3))
    nO, nK = 2, 2
    W_h = rng.normal(size=(3, nO * nK))
    W_t = rng.normal(size=(3, nO * nK))
    targets = numpy.array([[1, 0], [0, 0], [1, 1], [0, 1], [0, 0], [1, 0]], dtype="float64")
    weights = numpy.array([0.25, 0.0, 0.125, 0.25, 0.125, 0.25])
    return cands, lengths, Eb, Ep, W_h, W_t, targets, weights


def _eq9_reference(cands, lengths, Eb, Ep, W_h, W_t, targets, weights, nK=2):
    """Eq. 3-10 literally: full l x l matrices S_i per doc and relation, the
    mask M and label matrix Y_i of each entity pair, BCE over the masked
    elements averaged per block, weighted per pair, summed over relations."""
    nO = targets.shape[1]
    offsets = numpy.cumsum([0] + lengths)
    total, p = 0.0, 0
    for d, n_pairs in enumerate(cands.pair_lengths):
        X, Y_ = Eb[offsets[d]:offsets[d + 1]], Ep[offsets[d]:offsets[d + 1]]
        for _ in range(n_pairs):
            h, t = cands.pairs[p]
            (hs, he), (ts, te) = cands.spans[h], cands.spans[t]
            M = numpy.zeros((lengths[d], lengths[d]))
            M[hs:he, ts:te] = 1  # Eq. 6
            for i in range(nO):
                cols = slice(i * nK, (i + 1) * nK)
                P = _sigmoid((X @ W_h[:, cols]) @ (Y_ @ W_t[:, cols]).T)  # Eq. 3-5
                Yi = M * targets[p, i]  # Eq. 7
                bce = -(Yi * numpy.log(P) + (M - Yi) * numpy.log(1 - P))
                total += weights[p] * bce.sum() / M.sum()  # Eq. 8-9 per block, Eq. 10 sums over i
            p += 1
    return total


def _run_kernel(cands, lengths, Eb, Ep, W_h, W_t, nO=2, nK=2):
    model = kernel_scorer(nK, nO=nO, nI=Eb.shape[1])
    model.initialize()
    model.set_param("W_h", W_h.astype("float32"))
    model.set_param("W_t", W_t.astype("float32"))
    index = build_block_index(cands, lengths)
    return model, model((Eb.astype("float32"), Ep.astype("float32"), index), is_train=True)


def test_block_index_positions():
    cands, lengths, *_ = _random_case()
    index = build_block_index(cands, lengths)
    # doc 0 entity tokens [0 1 | 3 | 4], doc 1 [5+1 5+2 5+3 | 5+0]
    assert index.tokens.tolist() == [[0, 1, 3, 4], [6, 7, 8, 5]]
    assert index.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert index.block_sizes.tolist() == [2, 2, 2, 1, 3, 3]
    # pair 0 (tokens 0-1 -> token 3): rows 0, 1 x column 2
    assert list(zip(index.elem_row[:2], index.elem_col[:2])) == [(0, 2), (1, 2)]


def test_loss_equals_eq9_reference_and_gradients_match():
    cands, lengths, Eb, Ep, W_h, W_t, targets, weights = _random_case()
    model, ((logits, elements), backprop) = _run_kernel(cands, lengths, Eb, Ep, W_h, W_t)
    index = build_block_index(cands, lengths)
    # element logits in block order, recomputed from the forward's inputs
    S = numpy.concatenate([_pair_block(cands, lengths, Eb, Ep, W_h, W_t, p) for p in range(cands.n_pairs)])
    numpy.testing.assert_allclose(elements.data, S, rtol=1e-5, atol=1e-5)
    assert elements.lengths.tolist() == index.block_sizes.tolist()
    loss, d_elements = block_bce(elements.data, elements.lengths, targets, weights)
    reference = _eq9_reference(cands, lengths, Eb, Ep, W_h, W_t, targets, weights)
    assert loss == pytest.approx(reference, rel=1e-5)
    # the gradient of Eq. 9 w.r.t. the element scores, backpropagated through the kernel
    dEb, dEp, _ = backprop((None, Ragged(d_elements, elements.lengths)))
    f = lambda **kw: _eq9_reference(cands, lengths, **{**dict(Eb=Eb, Ep=Ep, W_h=W_h, W_t=W_t), **kw}, targets=targets, weights=weights)  # noqa: E731
    numpy.testing.assert_allclose(dEb, numeric_grad(lambda X: f(Eb=X), Eb), rtol=1e-3, atol=1e-5)
    numpy.testing.assert_allclose(dEp, numeric_grad(lambda X: f(Ep=X), Ep), rtol=1e-3, atol=1e-5)
    numpy.testing.assert_allclose(model.get_grad("W_h"), numeric_grad(lambda W: f(W_h=W), W_h), rtol=1e-3, atol=1e-5)
    numpy.testing.assert_allclose(model.get_grad("W_t"), numeric_grad(lambda W: f(W_t=W), W_t), rtol=1e-3, atol=1e-5)


def test_gradient_wrt_pair_logits():
    """Backprop also takes a gradient of the returned pair logits (block_loss = false)."""
    cands, lengths, Eb, Ep, W_h, W_t, *_ = _random_case(1)
    R = numpy.random.default_rng(2).normal(size=(cands.n_pairs, 2))
    _, (_, backprop) = _run_kernel(cands, lengths, Eb, Ep, W_h, W_t)
    dEb, _, _ = backprop((R.astype("float32"), None))

    def f(X):
        _, ((y, _), _) = _run_kernel(cands, lengths, X, Ep, W_h, W_t)
        return float((y.astype("float64") * R).sum())

    numpy.testing.assert_allclose(dEb, numeric_grad(f, Eb, eps=1e-2), rtol=2e-2, atol=2e-3)


def _pair_block(cands, lengths, Eb, Ep, W_h, W_t, p, nK=2):
    offsets = numpy.cumsum([0] + lengths)
    d = int(numpy.searchsorted(numpy.cumsum(cands.pair_lengths), p, side="right"))
    h, t = cands.pairs[p]
    (hs, he), (ts, te) = cands.spans[h] + offsets[d], cands.spans[t] + offsets[d]
    H = (Eb[hs:he] @ W_h).reshape(he - hs, -1, nK)
    T = (Ep[ts:te] @ W_t).reshape(te - ts, -1, nK)
    return numpy.einsum("mik,nik->mni", H, T).reshape(-1, H.shape[1])




def test_tail_attention_ignores_padding_and_empty_docs():
    fix_random_seed(0)
    layer = self_attention(8, heads=2, ffn_width=16, dropout=0.0)
    rng = numpy.random.default_rng(0)
    short, long = rng.normal(size=(3, 8)).astype("float32"), rng.normal(size=(7, 8)).astype("float32")
    empty = numpy.zeros((0, 8), dtype="float32")
    all_rows = [numpy.arange(len(X), dtype="int32") for X in (empty, long, short)]
    layer.initialize(X=([short], all_rows[2:]), Y=[short])
    alone = layer.predict(([short], all_rows[2:]))[0]
    batched = layer.predict(([empty, long, short], all_rows))
    assert batched[0].shape == (0, 8) and batched[1].shape == (7, 8)
    numpy.testing.assert_allclose(batched[2], alone, atol=1e-5)
    assert not numpy.allclose(alone, short)  # it does transform E_w
    Ys, backprop = layer(([empty, short, long], [all_rows[0], all_rows[2], all_rows[1]]), is_train=True)
    dXs, _ = backprop([numpy.ones_like(Y) for Y in Ys])
    assert [d.shape for d in dXs] == [(0, 8), (3, 8), (7, 8)] and all(numpy.isfinite(d).all() for d in dXs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_tail_attention_at_queries_equals_the_full_layer(norm_first):
    """E_p computed at a doc's entity tokens only equals torch's own layer at those
    rows, and so do the gradients w.r.t. every token (keys and values included)."""
    import torch

    fix_random_seed(0)
    layer = self_attention(8, heads=2, ffn_width=16, dropout=0.0)
    torch_layer = layer.layers[0].shims[0]._model
    torch_layer.norm_first = norm_first
    rng = numpy.random.default_rng(1)
    X = rng.normal(size=(9, 8)).astype("float32")
    rows = numpy.asarray([1, 2, 6], dtype="int32")
    layer.initialize(X=([X], [rows]), Y=[X[rows]])
    Ys, backprop = layer(([X], [rows]), is_train=True)
    dY = rng.normal(size=Ys[0].shape).astype("float32")
    (dX,), _ = backprop([dY])

    x = torch.tensor(X[None], requires_grad=True)
    full = torch.nn.TransformerEncoderLayer.forward(torch_layer, x)[0]
    numpy.testing.assert_allclose(Ys[0], full[rows].detach().numpy(), atol=1e-5)
    full[rows].backward(torch.tensor(dY))
    numpy.testing.assert_allclose(dX, x.grad[0].numpy(), atol=1e-5)


SMALL_TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": 32, "rows": [500, 100, 100, 100],
              "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "include_static_vectors": False},
    "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 32, "window_size": 1,
               "maxout_pieces": 3, "depth": 2},
}


def test_overfits_epo_and_seo_to_exactly_the_gold_set(nlp, gold_docs):
    epo = make_doc(nlp, "Ernst Haefliger died in Davos , Switzerland .",
                   [(0, 15, "PER"), (24, 29, "LOC"), (32, 43, "LOC")],
                   [(0, 1, "place_of_birth"), (0, 1, "place_of_death")], "en")
    seo = make_doc(nlp, "Alba Iulia is in Romania , whose capital is Bucharest .",
                   [(0, 10, "LOC"), (17, 24, "LOC"), (44, 53, "LOC")],
                   [(1, 0, "country_of"), (2, 1, "capital_of")], "en")
    assert overlap_classes(relation_keys(epo)) == {"EPO"}
    assert overlap_classes(relation_keys(seo)) == {"SEO"}
    docs = [epo, seo] + gold_docs
    fix_random_seed(0)
    pipeline = nlp
    config = {"@architectures": "spacy_mlre.KernelMatrix.v1", "width": 32, "projection_width": 16,
              "attention_heads": 4, "tok2vec": SMALL_TOK2VEC}
    pipeline.add_pipe("relation_extractor", config={"model": config})
    examples = [Example(make_input_doc(doc), doc) for doc in docs]
    optimizer = pipeline.initialize(lambda: examples)
    for _ in range(30):
        losses = pipeline.update(examples, sgd=optimizer)
    assert losses["relation_extractor"] < 0.05
    for doc, predicted in zip(docs, pipeline.pipe([make_input_doc(doc) for doc in docs])):
        assert set(relation_keys(predicted)) == set(relation_keys(doc)), doc.text


def test_kernel_trf_config_trains_with_tiny_bert(tiny_corpus, tiny_bert, tmp_path):
    """configs/kernel_trf.cfg runs end to end (a few steps) on a 32-wide BERT."""
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "kernel_trf.cfg"), "--output", str(tmp_path),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert), "--components.relation_extractor.model.width", "32",
           "--components.relation_extractor.model.attention_heads", "4", "--training.max_steps", "4",
           "--training.eval_frequency", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "model-last")
    assert nlp.get_pipe("relation_extractor").model.name == "kernel_matrix"
    doc = nlp(make_input_doc(make_doc(spacy.blank("xx"), "Zofia works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [])))
    assert all(0.0 <= r.score <= 1.0 for r in doc._.relations)
