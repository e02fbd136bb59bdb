"""Models at the edge: loading a causal LM with its tokenizer, counting its parameters, and the
provenance (commit, weights fingerprint) that names exactly which weights were scored."""
