"""``jestbench flops``: the report, its file, and bad arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.flops import flops_report
from strategies import default_registry


def test_flops_prints_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bench" / "flops.md"
    assert main(["flops", "--preset", "tiny", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert output.read_text() == printed
    assert "One FLOP = one multiply-add" in printed
    assert "| A = F_img,coarse / F_img | 0.531 |" in printed
    # Measured: the patch embedding's backward is 1x its forward, attention's 2.5x (docs/FLOPS.md).
    assert (
        "(image, text, both); the ledger charges 3 | 2.63, 3.06, 2.793: 3F is +7.4% of what runs |" in printed
    )
    for name in default_registry().list_strategies():
        assert f"| {name} | 0.80 | 640 |" in printed
    assert "| learnability, uncached reference | 0.80 | 640 | 4.33x | 4.00x |" in printed


def test_the_paper_preset_sets_the_paper_beside_ours() -> None:
    report = flops_report(["B/16"], batch_size=256, pool_size=1000, reference_examples=1000, steps=10)
    assert "| A = F_img,coarse / F_img | 0.245 | 0.280 | -12.5% |" in report
    assert "| ViT-B/16 image tower at 224 px | 17.5 G | 17.6 G | -0.5% |" in report
    assert "| jest | 0.80 | 1280 | 2.67x | 2.33x | 2.33x | +14.3% | +0.0% |" in report
    assert "| jest, uncached reference | 0.80 | 1280 | 4.33x | 4.00x | 4.00x | +8.3% | +0.0% |" in report
    assert "| flexi-jest | 0.80 | 1280 | 1.35x | 1.03x | 1.10x |" in report


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["flops", "--preset", "tiny", "smal"], "did you mean 'small'"),
        (["flops", "--preset", "tiny", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["flops", "--preset", "tiny", "--batch-size", "24"], "does not divide the sub-batch size b=24"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
