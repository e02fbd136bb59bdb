"""A byte-level BPE tokenizer trained on local text (the demo's, and the tests')."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, *, bos_eos: bool = True
) -> Any:
    """A byte-level BPE tokenizer (Hugging Face ``tokenizers``) trained on ``texts``, wrapped as
    ``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as BOS, EOS and padding unless ``bos_eos`` is
    False."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>"] if bos_eos else ["<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if bos_eos:
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=special[0], eos_token=special[0], pad_token=special[0]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=special[0])
