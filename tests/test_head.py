"""The chunked output head against each architecture's own full logits.

For every architecture the engine scores documents through ``body + head`` in vocabulary
chunks; the reference is the model's own ``model(...).logits`` for each document alone,
log-softmaxed in float64, with ranks by strict ``>`` on those float32 logits (Eq. 1).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from errorentropy.data.windows import tokenize
from errorentropy.head.chunked import score_hidden
from errorentropy.head.full import score_logits
from errorentropy.head.logits import LogitMap
from errorentropy.head.select import choose_head, find_head, verify_head
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.testing import tiny_model

PADDED = 13  # extra output entries past the tokenizer, as real checkpoints pad their vocabularies


def reference_scores(model: torch.nn.Module, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rank (strict >, float32) and float64 log-prob of every target of one document, from full
    logits."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, :-1].float()
    targets = torch.tensor(ids[1:])
    target_logit = logits.gather(1, targets[:, None])
    rank = (logits > target_logit).sum(-1).numpy()
    logprob = torch.log_softmax(logits.double(), dim=-1).gather(1, targets[:, None])[:, 0].numpy()
    return rank, logprob


def check_against_reference(
    model, tokenizer, docs, *, head="chunked", vocab_chunk=100, max_length=64, batch_size=4
) -> str:
    options = ScoreOptions(
        max_length=max_length,
        batch_size=batch_size,
        head=head,
        vocab_chunk=vocab_chunk,
        chunk_elements=vocab_chunk * 16,
    )
    result = score_documents(model, tokenizer, docs, options)
    ranks, logprobs = [], []
    for ids in tokenize(tokenizer, docs):
        if len(ids) >= 2:
            r, lp = reference_scores(model, ids[:max_length])
            ranks.append(r)
            logprobs.append(lp)
    ref_rank, ref_logprob = np.concatenate(ranks), np.concatenate(logprobs)
    np.testing.assert_array_equal(result.tokens.rank, ref_rank)
    np.testing.assert_allclose(result.tokens.logprob, ref_logprob, rtol=0, atol=1e-5)
    return result.head_path


@pytest.fixture(scope="module")
def docs(short_docs):
    return short_docs[:6]


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "qwen2", "opt", "mistral"])
def test_chunked_head_matches_model_logits(arch, tokenizer, docs):
    model = tiny_model(arch, len(tokenizer) + PADDED, hidden=32, layers=2, heads=4, context=128)
    head = find_head(model)
    assert head is not None
    ids = torch.tensor([tokenize(tokenizer, docs[:1])[0][:32]])
    assert verify_head(model, head, ids), f"{arch}: body + head should reproduce the model's logits"
    # auto picks the chunked head after verifying it; the numbers match the model's own logits
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"


def test_full_logits_path_matches_reference(tokenizer, docs):
    model = tiny_model("llama", len(tokenizer) + PADDED, hidden=32, layers=1, heads=2, context=128)
    assert check_against_reference(model, tokenizer, docs, head="full") == "full"


def test_tied_head(tokenizer, docs):
    model = tiny_model(
        "qwen2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, tie_word_embeddings=True
    )
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"


def test_opt_with_project_out(tokenizer, docs):
    """OPT with word_embed_proj_dim != hidden: the decoder's project_out maps back to the embedding
    width."""
    model = tiny_model(
        "opt",
        len(tokenizer) + PADDED,
        hidden=48,
        layers=1,
        heads=2,
        context=128,
        word_embed_proj_dim=24,
    )
    assert model.model.decoder.project_out is not None
    assert model.get_output_embeddings().weight.shape[1] == 24
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"


def test_head_with_bias(tokenizer, docs):
    model = tiny_model(
        "gpt2",
        len(tokenizer) + PADDED,
        hidden=32,
        layers=1,
        heads=2,
        context=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    lm_head = torch.nn.Linear(32, len(tokenizer) + PADDED, bias=True)
    torch.nn.init.normal_(lm_head.bias, std=2.0)
    model.lm_head = lm_head
    head = find_head(model)
    assert head is not None and head.logit_map.bias is not None
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"


def test_logit_softcapping(tokenizer, docs):
    """gemma2 soft-caps its final logits (tanh(z / cap) * cap); a small cap makes it bite."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "gemma2",
        vocab_size=len(tokenizer) + PADDED,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        final_logit_softcapping=2.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    # Large head weights so that capping changes the logits a lot.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30.0)
    head = find_head(model)
    assert head is not None and head.logit_map.softcap == 2.0
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"
    # Without the cap, body + head would not reproduce the logits: the cap is really applied.
    uncapped = replace(head, logit_map=replace(head.logit_map, softcap=None))
    ids = torch.tensor([tokenize(tokenizer, docs[:1])[0][:32]])
    assert not verify_head(model, uncapped, ids)


def test_auto_falls_back_when_logits_are_post_processed(tokenizer, docs):
    """A model whose forward changes the logits after the head: verify rejects the chunked head."""
    model = tiny_model(
        "gpt_neox", len(tokenizer) + PADDED, hidden=32, layers=1, heads=2, context=128
    )
    torch.manual_seed(2)
    offset = torch.randn(len(tokenizer) + PADDED) * 3.0

    def post_process(module, inputs, output):
        output.logits = output.logits / 0.7 + offset
        return output

    model.register_forward_hook(post_process)
    head = find_head(model)
    ids = torch.tensor([tokenize(tokenizer, docs[:1])[0][:32]])
    assert head is not None and not verify_head(model, head, ids)
    assert choose_head(model, "auto", ids[0].tolist()) is None
    # and the fallback (full logits) matches the post-processed logits themselves
    assert check_against_reference(model, tokenizer, docs, head="auto") == "full"


def test_score_hidden_equals_score_logits_with_ties():
    """Chunk boundaries, ties and the target's own column: the two scoring paths agree exactly."""
    torch.manual_seed(3)
    hidden = torch.randint(-2, 3, (57, 8)).float()
    weight = torch.randint(-1, 2, (301, 8)).float()  # integer logits: many exact ties
    targets = torch.randint(0, 301, (57,))
    full = score_logits(hidden @ weight.T, targets)
    for chunk in (1, 7, 64, 301, 1000):
        chunked = score_hidden(hidden, weight, targets, vocab_chunk=chunk, chunk_elements=chunk * 5)
        torch.testing.assert_close(chunked.rank, full.rank, rtol=0, atol=0)
        torch.testing.assert_close(chunked.tied, full.tied, rtol=0, atol=0)
        torch.testing.assert_close(chunked.logprob, full.logprob, rtol=0, atol=1e-6)


def test_score_hidden_memory_is_bounded():
    """No intermediate tensor of score_hidden is larger than one tile, a weight chunk or the input.

    Every aten op's outputs are recorded; [tokens, vocab] (here 4,000,000 elements) never appears.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestOutput(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
            return out

    n_tokens, hidden_size, vocab, vocab_chunk = 800, 16, 5000, 256
    chunk_elements = vocab_chunk * 32
    torch.manual_seed(4)
    hidden = torch.randn(n_tokens, hidden_size)
    weight = torch.randn(vocab, hidden_size)
    targets = torch.randint(0, vocab, (n_tokens,))
    with LargestOutput() as mode:
        scores = score_hidden(
            hidden, weight, targets, vocab_chunk=vocab_chunk, chunk_elements=chunk_elements
        )
    bound = max(chunk_elements, vocab_chunk * hidden_size, n_tokens * hidden_size)
    assert mode.largest <= bound < n_tokens * vocab // 100
    reference = score_logits(hidden @ weight.T, targets)
    torch.testing.assert_close(scores.rank, reference.rank, rtol=0, atol=0)
    torch.testing.assert_close(scores.logprob, reference.logprob, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "arch,key,value", [("cohere", "logit_scale", 0.3), ("granite", "logits_scaling", 3.0)]
)
def test_logit_scale_after_the_head(arch, key, value, tokenizer, docs):
    """Cohere multiplies the logits by logit_scale, Granite divides them by logits_scaling: the
    chunked head applies the same step (auto verifies it), and a head without it is rejected."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer) + PADDED,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        **{key: value},
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    head = find_head(model)
    assert head is not None and (head.logit_map.logit_scale, head.logit_map.logit_divisor) == (
        (value, None) if key == "logit_scale" else (None, value)
    )
    assert check_against_reference(model, tokenizer, docs, head="auto") == "chunked"
    assert check_against_reference(model, tokenizer, docs, head="chunked") == "chunked"
    ids = torch.tensor([tokenize(tokenizer, docs[:1])[0][:32]])
    assert not verify_head(model, replace(head, logit_map=LogitMap(head.logit_map.bias)), ids)


def test_a_forced_head_that_does_not_reproduce_the_logits_is_refused(tokenizer, docs):
    """--head chunked on a model whose forward changes the logits after the head: an error naming
    the fix, never silently different numbers (auto falls back to the full logits instead)."""
    from errorentropy.cli.messages import for_command_line
    from errorentropy.errors import UserError

    model = tiny_model(
        "gpt_neox", len(tokenizer) + PADDED, hidden=32, layers=1, heads=2, context=128
    )
    model.register_forward_hook(
        lambda module, inputs, output: setattr(output, "logits", output.logits * 0.5) or output
    )
    ids = tokenize(tokenizer, docs[:1])[0][:32]
    with pytest.raises(
        UserError,
        match="head='chunked': .* does not reproduce the model's own logits.*head='auto' or",
    ) as refused:
        choose_head(model, "chunked", ids)
    assert for_command_line(refused.value).endswith("use --head auto or --head full")
    assert choose_head(model, "auto", ids) is None


def test_a_pad_token_outside_the_model_vocabulary_is_never_looked_up(tokenizer, docs):
    """A pad token added to the tokenizer only (id = model vocabulary size): padding uses id 0,
    masked and never scored, so any batch size gives the reference numbers."""
    import copy

    padded = copy.deepcopy(tokenizer)
    padded.add_special_tokens({"pad_token": "[PADX]"})
    model = tiny_model("llama", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    assert padded.pad_token_id >= model.config.vocab_size
    for batch_size in (1, 3):
        assert (
            check_against_reference(model, padded, docs, head="auto", batch_size=batch_size)
            == "chunked"
        )


def test_full_logits_of_a_bfloat16_model_carry_a_note(tokenizer, docs):
    """In bfloat16 the full path ranks logits the model rounded to 8 mantissa bits (more ties)
    while the chunked head computes float32 logits: the result says so."""
    model = tiny_model("llama", len(tokenizer), hidden=32, layers=1, heads=2, context=128).to(
        torch.bfloat16
    )
    full = score_documents(model, tokenizer, docs, ScoreOptions(max_length=48, head="full"))
    chunked = score_documents(model, tokenizer, docs, ScoreOptions(max_length=48, head="auto"))
    assert chunked.head_path == "chunked" and not chunked.notes
    assert full.histogram.n_tied > chunked.histogram.n_tied
    assert any("bfloat16 logits" in n and f"{full.histogram.n_tied} of" in n for n in full.notes)
