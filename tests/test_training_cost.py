"""What a training pass runs, measured with torch's FLOP counter, against an independent account from
fvcore's per-operator forward counts: every linear layer's backward is 2x its forward, the patch
embedding's 1x (the pixels need no gradient) and attention's 2.5x (torch's formula)."""

from __future__ import annotations

import pytest

from harness.flops import flop_analysis, traced_parts, training_cost
from harness.models import PRESETS


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_the_training_pass_is_the_sum_of_its_parts(preset: str) -> None:
    config = PRESETS[preset]
    measured = training_cost(config)
    parts = traced_parts(config)
    for tower, part in (("image", "image_full"), ("text", "text")):
        ops = flop_analysis(*parts[part]).by_operator()
        linear, conv, attention = ops["linear"], ops.get("conv", 0), ops["scaled_dot_product_attention"]
        assert getattr(measured, f"{tower}_forward") == linear + conv + attention
        assert getattr(measured, f"{tower}_training") == 3 * linear + 2 * conv + 3.5 * attention
    assert measured.image_ratio < 3 < measured.text_ratio
    assert measured.overcharge == pytest.approx(3 / measured.ratio - 1)
