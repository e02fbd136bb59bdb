"""End to end with real scoring: tiny random models -> `errorentropy sweep` ->
`errorentropy report`, no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from errorentropy.cli import main


def test_sweep_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pydoc_data.topics import topics

    from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer

    texts = [topics[k] for k in sorted(topics)]
    tokenizer = train_bpe_tokenizer(texts[:30], vocab_size=300)
    spec = '[scoring]\nmax_length = 32\nbatch_size = 4\nprofile = true\n\n[run]\ndevice = "cpu"\n'
    for i, hidden in enumerate(
        (8, 16, 32)
    ):  # three sizes of one family, each at two training steps and final
        kw = dict(hidden=hidden, layers=1, heads=2, context=64)
        folder = save_model(
            tiny_model("gpt2", len(tokenizer), seed=i, **kw), tokenizer, tmp_path / f"toy-{hidden}"
        )
        for step in (0, 10):
            tiny_model("gpt2", len(tokenizer), seed=100 * step + i, **kw).save_pretrained(
                folder / "checkpoints" / f"step{step}"
            )
        spec += (
            f'\n[[models]]\nid = "toy-{hidden}"\nfamily = "toy"\n'
            'revisions = ["step0", "step10", "main"]\n'
        )
    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as handle:
        for text in texts[40:48]:
            handle.write(json.dumps({"text": text[:200]}) + "\n")
    spec += '\n[[datasets]]\ndata = "docs.jsonl"\nlabel = "docs"\n'
    (tmp_path / "spec.toml").write_text(spec, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["sweep", str(tmp_path / "spec.toml"), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--n-boot", "20", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Fig. 3-8, the RBP_k exponents and EE against documents
    assert result["n_figures"] == 8, result["notes"]
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img class="figure"[^>]*src="data:image/png;base64,', page)) == 8
    assert '<table id="table1"' in page and '<table id="table2"' in page
    assert (out / "fits.json").exists()
    # The final revision of each model is its main folder; the fits see three sizes of one family.
    assert "| docs | toy | 3 |" in (out / "report.md").read_text()
    # The page opens with the question, the verdict and the headline figure (Fig. 7 of docs);
    # the one family's fits are the All fits, shown once; settings and notes are folded away.
    start = page.index('<h1 id="question">Does Error-Entropy follow a cleaner power law')
    assert start < page.index('<div id="verdict">') < page.index('id="headline-figure"')
    assert page.index('id="headline-figure"') < page.index('<h2 id="figures">')
    assert "On docs (3 models, one family), R² is " in page
    assert "| docs | All |" not in (out / "report.md").read_text()
    assert page.index('<details id="settings-details">') > page.index('<h2 id="statements">')
