"""The AMNRE network (paper: amnre-adversarial-multilingual-nre), used by
`spacy_mlre.AMNRE.v1` only: per-language CNN / BiGRU sentence encoders,
selective attention over bags, the language discriminator and the
orthogonality penalty, as torch modules."""
