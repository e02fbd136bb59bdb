"""The rank histogram: its algebra, its saved form, and the exact identity CE = EE + SA - Conf."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errorentropy.errors import UserError
from errorentropy.stats.histogram import RankHistogram
from reference import naive_decompose

token_lists = st.lists(
    st.tuples(st.integers(0, 60), st.floats(-30.0, -1e-6, allow_nan=False)), min_size=1, max_size=80
)


def hist_of(pairs, **kw) -> RankHistogram:
    ranks = np.array([r for r, _ in pairs], dtype=np.int64)
    logprobs = np.array([lp for _, lp in pairs])
    return RankHistogram.from_tokens(ranks, logprobs, **kw)


@settings(max_examples=60, deadline=None)
@given(token_lists, token_lists, token_lists)
def test_addition_is_associative_and_commutative(a, b, c):
    ha, hb, hc = hist_of(a, n_documents=1), hist_of(b, n_tied=2), hist_of(c, n_skipped=3)
    assert (ha + hb).equals(hb + ha)
    assert ((ha + hb) + hc).equals(ha + (hb + hc), rtol=1e-12)
    assert sum([ha, hb, hc]).equals(ha + hb + hc, rtol=1e-12)
    # Merging equals one pass over the concatenated tokens.
    assert (ha + hb + hc).counts.tolist() == hist_of(a + b + c).counts.tolist()
    np.testing.assert_allclose(
        (ha + hb + hc).logprob_sums, hist_of(a + b + c).logprob_sums, rtol=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(token_lists)
def test_zero_and_empty_are_identities(a):
    h = hist_of(a, n_documents=2)
    assert (0 + h).equals(h) and (h + 0).equals(h)
    assert (h + RankHistogram()).equals(h)
    assert sum([h]).equals(h)


@settings(max_examples=60, deadline=None)
@given(token_lists)
def test_identity_and_reference(a):
    h = hist_of(a)
    d = h.decompose()
    ref = naive_decompose([r for r, _ in a], [lp for _, lp in a])
    assert abs(d.identity_residual) < 1e-9
    for key in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert getattr(d, key) == pytest.approx(ref[key], rel=1e-9, abs=1e-9)
    assert d.self_alignment >= -1e-12  # a KL divergence
    assert d.p.sum() == pytest.approx(1.0) and d.q.sum() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(token_lists)
def test_save_load_round_trip_is_bit_exact(tmp_path_factory, a):
    h = hist_of(a, n_documents=3, n_skipped=1, n_tied=4)
    path = tmp_path_factory.mktemp("h") / "histogram.json"
    h.save(path)
    back = RankHistogram.load(path)
    assert back.equals(h)  # rtol=0: identical bits
    assert back.logprob_sums.tobytes() == h.logprob_sums.tobytes()


def test_empty_histogram_refuses_to_decompose():
    with pytest.raises(UserError, match="empty"):
        RankHistogram().decompose()


def test_corrupted_file_is_detected(tmp_path):
    h = hist_of([(0, -0.5), (3, -2.0)])
    path = tmp_path / "h.json"
    h.save(path)
    text = path.read_text().replace('"n_documents": 0', '"n_documents": 7')
    path.write_text(text)
    with pytest.raises(UserError, match="checksum"):
        RankHistogram.load(path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(UserError, match="corrupted or truncated"):
        RankHistogram.load(path)


def test_ee_depends_only_on_ranks():
    rng = np.random.default_rng(0)
    ranks = rng.geometric(0.3, size=500) - 1
    logprobs = -rng.exponential(2.0, size=500)
    a = RankHistogram.from_tokens(ranks, logprobs).decompose()
    b = RankHistogram.from_tokens(ranks, logprobs * 3.0).decompose()
    assert a.error_entropy == b.error_entropy
    assert a.cross_entropy != pytest.approx(b.cross_entropy)


def test_non_finite_logprobs_are_refused():
    with pytest.raises(UserError, match="NaN or inf"):
        RankHistogram.from_tokens(np.array([0, 1]), np.array([-1.0, float("nan")]))


def test_bookkeeping_fields_must_be_non_negative_integers(tmp_path):
    from errorentropy.storage import write_checked_json

    hist = RankHistogram.from_tokens(
        np.array([0, 1, 1]), np.array([-0.1, -1.0, -2.0]), n_documents=1
    )
    for field, bad in (("n_documents", -3), ("n_skipped", 1.7), ("n_tied", "2"), ("n_tied", True)):
        body = {k: v for k, v in hist.to_dict().items() if k != "checksum"}
        body[field] = bad
        write_checked_json(tmp_path / "h.json", body)  # a valid checksum over a bad value
        with pytest.raises(UserError, match="non-negative integers"):
            RankHistogram.load(tmp_path / "h.json")


def test_printed_decomposition_states_the_identity_with_its_numbers():
    hist = RankHistogram.from_tokens(np.array([0, 1, 1, 3, 0]), np.log([0.5, 0.2, 0.3, 0.1, 0.6]))
    d = hist.decompose()
    lines = str(d).splitlines()
    assert lines[0] == "CE = EE + SA - Conf over 5 tokens (nats per token):"
    ce, rest = lines[1].split(" = ")
    ee, sa, conf = rest.replace(" - ", " + ").split(" + ")
    assert float(ce) == round(d.cross_entropy, 6) and float(ee) == round(d.error_entropy, 6)
    assert float(sa) == round(d.self_alignment, 6)
    assert float(conf.strip("()")) == round(d.confidence, 6)
    assert f"  top1_accuracy: {d.top1_accuracy:.6g}" in lines
