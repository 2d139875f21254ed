"""BioALBERT: biomedical corpora, NER datasets, metrics and export on top of `albert`."""
