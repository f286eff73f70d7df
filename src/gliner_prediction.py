"""GLiNER prediction on pre-split words, in token units: label groups and word chunks that fit the encoder.

Shared by scripts/evaluate_gliner.py (scoring GLiNER on project data) and src/generation (GLiNER as a teacher).
Traps of gliner 0.2.29 handled here: its own word splitter is bypassed (the caller's words are fed, so boundaries
are the caller's words), flat or nested decoding is chosen explicitly, and a uni-encoder's label prompt and text
are kept within the encoder's length instead of being cut silently.
"""

from __future__ import annotations

from pathlib import Path

Span = tuple[int, int, str, float]  # (start, end_exclusive, label, score) in token units


def load_gliner(name_or_path: str, device: str = "cpu"):
    """A GLiNER model from the hub or a local folder (offline when HF_HUB_OFFLINE=1)."""
    from gliner import GLiNER

    local = Path(name_or_path).is_dir()
    model = GLiNER.from_pretrained(name_or_path, local_files_only=local)
    return model.to(device).eval()


def _subword_counts(tokenizer, words: list[str]) -> list[int]:
    """Subwords of each word, tokenised as a pre-split sequence without special tokens."""
    if not words:
        return []
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    counts = [0] * len(words)
    for word_id in enc.word_ids():
        if word_id is not None:
            counts[word_id] += 1
    return counts


def sequence_limit(model) -> int:
    """Subwords the encoder reads: the tokenizer's limit, capped by the backbone's position embeddings."""
    tokenizer = model.data_processor.transformer_tokenizer
    positions = getattr(model.config.encoder_config, "max_position_embeddings", None) or tokenizer.model_max_length
    return min(tokenizer.model_max_length, positions)


def is_uni_encoder(model) -> bool:
    """True when the labels are written into the text's input (a prompt) rather than encoded on their own."""
    return getattr(model.config, "labels_encoder", None) is None


def label_groups(model, prompts: list[str], *, max_group_size: int | None = None) -> list[list[str]]:
    """Split label prompts so each group's prompt takes at most half of the encoder's window.

    Bi-encoder models read labels separately, so they get one group (unless max_group_size says otherwise).
    """
    budget = sequence_limit(model) // 2 if is_uni_encoder(model) else None
    tokenizer = model.data_processor.transformer_tokenizer
    sizes = _subword_counts(tokenizer, prompts)
    groups: list[list[str]] = [[]]
    used = 1  # the separator token after the prompt
    for prompt, size in zip(prompts, sizes, strict=True):
        cost = size + 1  # the entity marker before each label
        full = max_group_size is not None and len(groups[-1]) >= max_group_size
        if groups[-1] and (full or (budget is not None and used + cost > budget)):
            groups.append([])
            used = 1
        groups[-1].append(prompt)
        used += cost
    return groups


def prompt_length(model, prompts: list[str]) -> int:
    """Subwords a group's prompt adds in front of the text (0 for bi-encoders)."""
    if not is_uni_encoder(model):
        return 0
    return sum(_subword_counts(model.data_processor.transformer_tokenizer, prompts)) + len(prompts) + 1


def word_chunks(model, words: list[str], prompt_subwords: int) -> list[tuple[int, int]]:
    """Split a sentence into consecutive word ranges that fit the encoder beside the prompt and GLiNER's max_len."""
    budget = max(1, sequence_limit(model) - prompt_subwords - 2)  # 2: the encoder's special tokens
    max_words = model.config.max_len
    chunks, begin, used = [], 0, 0
    for k, size in enumerate(_subword_counts(model.data_processor.transformer_tokenizer, words)):
        if k > begin and (used + size > budget or k - begin >= max_words):
            chunks.append((begin, k))
            begin, used = k, 0
        used += size
    chunks.append((begin, len(words)))
    return chunks


def predict_gliner(
    model,
    records: list[dict],
    labels: list[str],
    *,
    prompts: dict[str, str] | None = None,
    threshold: float = 0.5,
    flat_ner: bool = True,
    batch_size: int = 8,
    max_group_size: int | None = None,
) -> tuple[list[list[Span]], dict]:
    """GLiNER's spans for each record in token units (end exclusive), and counts of the splits that were needed.

    `prompts` maps a data label to the text GLiNER is asked for (default: the label itself).
    """
    import torch

    from .decoding import resolve_overlaps

    prompts = prompts or {}
    asked = [prompts.get(label, label) for label in labels]
    label_of = {prompt: c for c, prompt in enumerate(asked)}
    groups = label_groups(model, asked, max_group_size=max_group_size)
    found: list[list[tuple[int, int, int, float]]] = [[] for _ in records]
    split: set[int] = set()  # records that had to be cut into word chunks for some label group
    for group in groups if labels else []:
        items = []  # (record index, first word, words)
        for r, record in enumerate(records):
            chunks = word_chunks(model, record["tokens"], prompt_length(model, group))
            if len(chunks) > 1:
                split.add(r)
            items += [(r, begin, record["tokens"][begin:end]) for begin, end in chunks]
        for begin in range(0, len(items), batch_size):
            batch_items = items[begin : begin + batch_size]
            batch = model.collate_batch(model.prepare_base_input([words for _, _, words in batch_items]), group)
            with torch.no_grad():
                output = model.run_batch(batch, threshold=threshold)
            decoded = model.decode_batch(output, batch, threshold=threshold, flat_ner=flat_ner, multi_label=False)
            for (r, first, _), spans in zip(batch_items, decoded, strict=True):
                found[r] += [(first + s.start, first + s.end, label_of[s.entity_type], s.score) for s in spans]
    predictions = [
        [(start, end + 1, labels[c], score) for start, end, c, score in resolve_overlaps(spans, flat_ner=flat_ner)]
        for spans in found
    ]
    return predictions, {"label_groups": len(groups), "split_sentences": len(split)}
