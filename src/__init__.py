"""Span-based dual-encoder (bi-encoder) named entity recognition: model, data, training and evaluation."""
