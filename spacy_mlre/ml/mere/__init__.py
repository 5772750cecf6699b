"""Blocks of mERE (paper: mere-unified-to-language-specific), used by
`spacy_mlre.MERE.v1` only: the language-universal aggregator, the
language-specific switcher and the entity pointers with their span decoding."""
