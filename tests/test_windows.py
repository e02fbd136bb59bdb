"""Documents to windows: which tokens get scored, with what context."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errorentropy.data.windows import batches, make_windows, padded_length, tokenize
from errorentropy.errors import UserError


def scored_positions(windows):
    """(doc, position) of every scored target, and the context each target saw."""
    seen = []
    for w in windows:
        for j in range(w.score_from, len(w.input_ids)):
            seen.append((w.doc, w.offset + j, j))
    return seen


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 90), min_size=1, max_size=6), st.integers(2, 20), st.data())
def test_stride_scores_every_token_once(lengths, max_length, data):
    stride = data.draw(st.integers(1, max_length - 1))
    docs = [list(range(n)) for n in lengths]
    windows, skipped = make_windows(docs, max_length, "stride", stride)
    assert skipped == sum(n < 2 for n in lengths)
    seen = scored_positions(windows)
    expected = [(d, p) for d, n in enumerate(lengths) if n >= 2 for p in range(1, n)]
    assert sorted((d, p) for d, p, _ in seen) == expected
    for w in windows:
        assert 2 <= len(w.input_ids) <= max_length
        assert list(w.input_ids) == docs[w.doc][w.offset : w.offset + len(w.input_ids)]
    # Every target after the first window has at least max_length - stride tokens of context, or all
    # there is.
    for _, position, j in seen:
        assert j >= min(position, max_length - stride)


def test_truncate_keeps_the_first_tokens_and_skips_short_documents():
    windows, skipped = make_windows([list(range(10)), [5], [], [1, 2]], 4, "truncate")
    assert skipped == 2
    assert [w.input_ids for w in windows] == [(0, 1, 2, 3), (1, 2)]
    assert all(w.score_from == 1 for w in windows)


@pytest.mark.parametrize(
    "max_length,window,stride,message",
    [
        (1, "truncate", None, "at least 2"),
        (8, "stride", None, "needs stride=K"),
        (8, "stride", 8, "between 1 and"),
        (8, "stride", 0, "between 1 and"),
        (8, "sliding", None, "unknown window"),
    ],
)
def test_impossible_window_options(max_length, window, stride, message):
    with pytest.raises(UserError, match=message):
        make_windows([[1, 2, 3]], max_length, window, stride)


def test_bos_modes(tokenizer):
    text = ["the cat"]
    auto = tokenize(tokenizer, text, "auto")[0]
    never = tokenize(tokenizer, text, "never")[0]
    always = tokenize(tokenizer, text, "always")[0]
    assert auto == never  # a GPT-2-style tokenizer adds no special tokens by default
    assert always == [tokenizer.bos_token_id] + never


def test_padded_width_depends_on_the_window_alone():
    assert [padded_length(n, 512) for n in (2, 9, 17, 64, 65, 500)] == [8, 16, 32, 64, 128, 512]
    assert padded_length(20, 20) == 20 and padded_length(12, 20) == 16
    windows, _ = make_windows([list(range(n)) for n in (3, 70, 12, 9, 70)], 100, "truncate")
    for size in (1, 2, 5):
        out = list(batches(windows, size, pad_id=0, max_length=100))
        assert sorted(w.doc for b in out for w in b.windows) == [0, 1, 2, 3, 4]
        for b in out:
            assert b.input_ids.shape[1] == padded_length(len(b.windows[0].input_ids), 100)
            assert int(b.attention_mask.sum()) == sum(len(w.input_ids) for w in b.windows)
