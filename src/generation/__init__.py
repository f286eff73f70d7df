"""NER dataset generation: annotate raw text with a teacher model into training-ready JSONL (see docs/generation.md).

words (the word rule) -> pieces (sentences, windows) -> records (one JSONL line each); teachers (span model,
GLiNER); annotator (the one per-batch function); inputs (documents read from files); writer (chunked, resumable
output and its manifest); engines (one process, a process pool, accelerate, Ray Data) only feed and collect.
"""
