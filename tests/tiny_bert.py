"""A tiny multilingual BERT built locally, so transformer code paths are tested
offline: a WordPiece tokenizer trained on a few sentences in several scripts
and a 2-layer BERT with random weights, saved as a Hugging Face directory."""
from pathlib import Path

SENTENCES = [
    "Alice works for Acme in Paris .",
    "Bob and Carol are siblings .",
    "Dieter arbeitet für Siemens in München .",
    "Émile travaille chez Renault à Lyon .",
    "Zofia pracuje w Orlen w Warszawie .",
    "Иван работает в Газпроме в Москве .",
    "田中さんは東京のトヨタで働いています 。",
    "محمد يعمل في أرامكو في الرياض .",
    "Nothing here .",
]


def build_tiny_bert(path: Path, special_tokens: bool = False) -> Path:
    """special_tokens: the tokenizer wraps each input in [CLS] ... [SEP] as real
    BERTs do (the default tokenizer adds none, so it has no CLS embedding)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES * 5, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    if special_tokens:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=False)
    fast.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(path))
    return path
