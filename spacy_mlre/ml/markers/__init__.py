"""Entity-marker inputs (paper: cross-lingual-re-entity-type-markers), used by
`spacy_mlre.EntityMarker.v1` only: where the markers go in each pair's
sequence, and the encoders that read the marked sequences."""
