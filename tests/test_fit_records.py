"""The one reader and writer of versioned JSON records (storage.to_record / from_record), and EE's
share trend, recorded by the fit and only read by the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from errorentropy.fits.fit import fit_sweep, read_fits
from errorentropy.fits.records import FitRow, RbpFitRow, SweepFits
from errorentropy.report import collect, prose
from errorentropy.storage import OMIT_DEFAULT, RECORD_KEY, from_record, to_record
from errorentropy.testing import synthetic_sweep

GOLDEN_FITS = Path(__file__).parent / "golden" / "v1" / "fits.json"


@dataclass(frozen=True)
class Inner:
    name: str
    weight: float | None = None


@dataclass(frozen=True)
class Outer:
    count: int
    span: tuple[float, float] | None
    items: tuple[Inner, ...]
    by_key: Mapping[str, Inner]
    sizes: tuple[int, ...] = ()
    energy: float | None = field(default=None, metadata={RECORD_KEY: "E"})
    flag: bool = field(default=False, metadata={OMIT_DEFAULT: True})


def test_a_record_round_trips_through_json_with_its_types() -> None:
    value = Outer(3, (0.5, 1.5), (Inner("a", 2.0), Inner("b")), {"k": Inner("c", 1.0)}, (1, 2))
    raw = json.loads(json.dumps(to_record(value)))
    assert raw == {
        "count": 3,
        "span": [0.5, 1.5],
        "items": [{"name": "a", "weight": 2.0}, {"name": "b", "weight": None}],
        "by_key": {"k": {"name": "c", "weight": 1.0}},
        "sizes": [1, 2],
        "E": None,
    }
    assert from_record(Outer, raw) == value
    assert to_record(replace(value, flag=True))["flag"] is True
    assert list(to_record(value, only=("count",))) == ["count"]


def test_a_record_reads_ints_as_floats_and_missing_keys_as_defaults() -> None:
    read = from_record(Outer, {"count": 2.0, "span": [1, 2], "items": [], "by_key": {}})
    assert read == Outer(2, (1.0, 2.0), (), {})
    assert isinstance(read.span[0], float) and isinstance(read.count, int)
    with pytest.raises(KeyError):
        from_record(Outer, {"span": None, "items": [], "by_key": {}})  # count has no default
    with pytest.raises(ValueError):
        from_record(Outer, {"count": 1, "span": [1, 2, 3], "items": [], "by_key": {}})


def test_fit_rows_share_the_line_fields_and_keep_their_file_layout() -> None:
    body = json.loads(GOLDEN_FITS.read_text())
    body.pop("checksum")
    fits = SweepFits.from_dict(body)
    assert fits.to_dict() == body  # 0.1.0's file reads and writes back unchanged
    line = {"alpha", "c", "r2", "alpha_ci", "r2_ci", "n_boot_valid", "skipped"}
    for cls in (FitRow, RbpFitRow):
        assert line <= set(cls.__dataclass_fields__)
    assert set(body["fits"][0]) == set(fits.fits[0].to_dict())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_sweep(tmp_path_factory.mktemp("share") / "sweep", n_docs=20, doc_len=60)


def test_the_share_trend_is_the_least_squares_slope_per_decade(sweep: Path) -> None:
    fits = fit_sweep(sweep, n_boot=30, seed=0)
    trend = fits.share_trend("synth")
    assert trend is not None and trend.n_models == 4
    cells = sorted((c for c in fits.cells if c.final), key=lambda c: c.non_embedding_params)
    shares = [c.components["EE"].value / c.components["CE"].value for c in cells]
    expected = np.polyfit(np.log10([c.non_embedding_params for c in cells]), shares, 1)[0]
    assert trend.slope == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert trend.slope_ci is not None and trend.slope_ci[0] <= trend.slope_ci[1]
    assert SweepFits.from_dict(fits.to_dict()) == fits
    assert read_fits(GOLDEN_FITS).share_trends == ()  # older files: absent, not invented


def test_the_report_reads_the_share_trend_and_fits_none_itself(sweep: Path) -> None:
    data = collect.collect(sweep, run_fit=False)
    trend = data.fits.share_trend("synth")
    assert trend is not None and trend.slope is not None
    (sentence,) = [s for s in prose.summary_sentences(data) if "% of CE" in s]
    assert f"{100 * abs(trend.slope):.2f} percentage points" in sentence
    old = replace(data, fits=replace(data.fits, share_trends=()))  # a fits.json from before
    (sentence,) = [s for s in prose.summary_sentences(old) if "% of CE" in s]
    assert "percentage points" not in sentence
    assert "rerun `errorentropy fit`" in sentence
