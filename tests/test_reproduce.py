"""`jestbench reproduce`: the verdict rule on simulated data with known answers, the joint
learnability it measures against the loss it stands for, and `--quick` end to end on the shared
learning dataset (its reference is the quick scale's, so it is reused)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LEARN_REFERENCE, Learning

from harness.cli import main
from harness.data import Dataset
from harness.losses import sigmoid_loss
from harness.reproduce import CLAIMS, QUICK, VERDICTS, Check, Context, decide
from harness.reproduce.context import ANALYSIS_SEED
from harness.reproduce.selection import joint_learnability
from harness.reproduce.verdict import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, NOT_TESTABLE, PARTLY
from harness.view import EmbeddingView, dense_scores


def test_verdict_follows_the_checks_on_known_differences() -> None:
    rng = np.random.default_rng(0)
    clear = rng.normal(1.0, 0.1, 10)  # separable, positive
    null = rng.normal(0.0, 1.0, 10)
    assert decide([Check.of("a", clear), Check.of("b", clear + 1)]).verdict == HOLDS
    assert decide([Check.of("a", clear), Check.of("b", null)]).verdict == PARTLY
    # Separable but in the opposite direction is not support, and the reason counts it as against.
    opposite = decide([Check.of("a", -clear), Check.of("b", null)])
    assert opposite.verdict == DOES_NOT_HOLD and [r.against for r in opposite.checks] == [True, False]
    assert (
        "0 of 2 comparison(s) separable in the paper's direction, 1 separable against it" in opposite.reason
    )
    assert "against" not in decide([Check.of("b", null)]).reason
    assert decide([Check.of("a", -clear, direction=-1)]).verdict == HOLDS
    # A threshold: the mean ratio 1.0 ± 0.1 is above 0.8 but not above 1.2.
    assert decide([Check.of("r", clear, threshold=0.8)]).verdict == HOLDS
    assert decide([Check.of("r", clear, threshold=1.2)]).verdict == DOES_NOT_HOLD
    undefined = decide([Check.of("ratio", [1.0, float("inf"), 2.0]), Check.of("a", clear)])
    assert undefined.verdict == PARTLY and not undefined.checks[0].supports
    one = decide([Check.of("a", [1.0])], untestable="one seed")
    assert (one.verdict, one.reason) == (NOT_TESTABLE, "one seed")
    exact = decide([Check.exact_count("cheaper", 3.0), Check.exact_count("dearer", -1.0)])
    assert exact.verdict == PARTLY and [r.supports for r in exact.checks] == [True, False]


def test_holm_keeps_false_holds_rare_under_the_null() -> None:
    """400 simulated claims of three null checks each: a verdict other than 'does not hold' is a
    false positive, which Holm keeps at most α = 5% (the union bound over three checks)."""
    rng = np.random.default_rng(1)
    data = rng.normal(0.0, 1.0, (400, 3, 5))
    false = sum(
        decide([Check.of(str(k), claim[k]) for k in range(3)]).verdict != DOES_NOT_HOLD for claim in data
    )
    assert false / 400 <= 0.05
    # With a real effect of 2 sd the same design finds it nearly always.
    found = sum(decide([Check.of("a", row + 2.0)]).verdict == HOLDS for row in data[:200, 0])
    assert found / 200 > 0.9


def test_joint_learnability_is_the_batch_loss_difference() -> None:
    """(1/b)·Σ_{S×S}(L(θ) − L(θ*)) is the learner's SigLIP batch loss on S minus the reference's."""
    g = torch.Generator().manual_seed(0)

    def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
        return torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)

    from strategies import Embeddings

    (xi, yi), (ri, rt) = embeddings(), embeddings()
    view = EmbeddingView(Embeddings(xi, yi, 10.0, -5.0), Embeddings(ri, rt, 7.0, -3.0))
    index = torch.tensor([3, 7, 11, 20, 31])
    expected = sigmoid_loss(xi[index], yi[index], 10.0, -5.0) - sigmoid_loss(ri[index], rt[index], 7.0, -3.0)
    got = joint_learnability(dense_scores(view, "learnability").double(), index)
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_registry_has_every_claim_once_with_its_rule() -> None:
    assert [c.number for c in CLAIMS] == list(range(1, 9))
    for claim in CLAIMS:
        assert all([claim.figure, claim.statement, claim.paper, claim.needs, claim.measures, claim.rule])


def test_quick_writes_a_row_and_a_computed_verdict_per_claim(
    learning: Learning, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (QUICK.preset, QUICK.reference_budget, QUICK.reference_batch_size) == (
        LEARN_REFERENCE["preset"],
        LEARN_REFERENCE["budget"],
        LEARN_REFERENCE["batch_size"],
    )  # so the shared reference is reused, not trained again
    work, out = learning.private_work_dir(tmp_path), tmp_path / "report"
    argv = [
        "reproduce",
        "--quick",
        "--data",
        str(learning.dataset.root),
        "--work",
        str(work),
        "--out",
        str(out),
    ]
    assert main([*argv, "--threads", "1", "--jobs", "2"]) == 0
    # --jobs 2 trained the claims' runs first, two at a time; the claims then used exactly those, and
    # the analysis run, which keeps snapshots through a callback in-process.
    used = set(re.findall(r"^run ([0-9a-f]{16}): ", capsys.readouterr().out, flags=re.MULTILINE))
    ctx = Context(work, learning.dataset, QUICK, out)
    planned = {c.run_id for claim in CLAIMS for c in claim.runs(ctx)}
    analysis = ctx.config("uniform", filter_ratio=0.0, seed=ANALYSIS_SEED).run_id
    made = {p.stem for p in (work / "runs").glob("*.json")}
    assert planned and used == made == planned | {analysis}, (used ^ made, made - planned)

    report = (out / "REPORT.md").read_text()
    rows = [line for line in report.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [int(row.split("|")[1]) for row in rows] == [c.number for c in CLAIMS]
    for row in rows:
        verdict = re.search(r"\*\*(.+?)\*\*", row)
        assert verdict is not None and verdict.group(1) in VERDICTS

    summary = json.loads((out / "report.json").read_text())["claims"]
    for claim in summary:
        checks = claim["checks"]
        # Every claim is measured; "not testable" only with a reason the measurement computed.
        assert claim["measured"] and claim["verdict"] != NOT_MEASURED
        if claim["verdict"] == NOT_TESTABLE:
            assert not checks and claim["reason"]
            continue
        # The verdict is the count of supported checks, nothing else.
        supported = sum(c["supports"] for c in checks)
        expected = HOLDS if supported == len(checks) else DOES_NOT_HOLD if supported == 0 else PARTLY
        assert checks and claim["verdict"] == expected
        assert all(c["p_holm"] < 0.05 for c in checks if c["supports"] or c["against"])
        assert not any(c["supports"] and c["against"] for c in checks)
        assert (out / claim["figure_path"]).is_file()
    selection = next(c for c in summary if c["claim"] == 1)
    # Three points of training (25%, 50%, end), two comparisons each, from snapshots the callback kept.
    assert len(selection["checks"]) == 6
    filter_ratio = next(c for c in summary if c["claim"] == 2)
    assert len(filter_ratio["checks"]) == 3  # f = 0.5 < 0.8 < 0.9 < 0.95: B = 640 fits the pool of 3,000
    mechanism = next(c for c in summary if c["claim"] == 8)
    # Two seeds, five evaluations, redundant samples in the probe: all four comparisons are tested.
    assert len(mechanism["checks"]) == 4 and all(c["n"] == 2 for c in mechanism["checks"])

    # A second call with --claims trains nothing (every run is found complete), reports the same
    # numbers for the claims it measures, and keeps the others' rows and sections as they were.
    runs = sorted((work / "runs").iterdir())
    before = report
    assert main([*argv, "--threads", "1", "--claims", "1", "4", "5"]) == 0
    assert sorted((work / "runs").iterdir()) == runs
    report = (out / "REPORT.md").read_text()
    assert "Not in this report" not in report
    header = report.splitlines()[2]
    assert "claims 1, 4, 5 by `jestbench reproduce --quick --claims 1 4 5`" in header
    assert "claims 2, 3, 6, 7, 8 by `jestbench reproduce --quick`" in header
    again = {c["claim"]: c for c in json.loads((out / "report.json").read_text())["claims"]}
    assert sorted(again) == [c.number for c in CLAIMS]
    for claim in summary:
        assert (again[claim["claim"]]["ours"], again[claim["claim"]]["checks"]) == (
            claim["ours"],
            claim["checks"],
        )
        if claim["claim"] not in (1, 4, 5):  # kept, not measured again: the same text, seconds and all
            assert again[claim["claim"]] == claim
            assert _section(report, claim["claim"]) == _section(before, claim["claim"])

    # A report of another data setting in --out is replaced, not merged with.
    record = json.loads((out / "report.json").read_text())
    (out / "report.json").write_text(json.dumps({**record, "data": "another (0000000000000000)"}))
    assert main([*argv, "--threads", "1", "--claims", "5"]) == 0
    assert "is replaced" in capsys.readouterr().out
    report = (out / "REPORT.md").read_text()
    assert "**Not in this report: claims 1, 2, 3, 4, 6, 7, 8**" in report
    assert [c["claim"] for c in json.loads((out / "report.json").read_text())["claims"]] == [5]


def _section(report: str, number: int) -> str:
    """Claim ``number``'s section of a REPORT.md, its heading to the next."""
    sections = re.split(r"^## ", report, flags=re.MULTILINE)[1:]
    return next(s for s in sections if s.startswith(f"Claim {number}."))


def test_unknown_claim_number_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--quick", "--claims", "9", "--work", str(tmp_path)]) == 2
    assert "--claims [9]" in capsys.readouterr().err


def test_full_scale_reuses_the_full_suites_runs(tiny_dataset: Dataset, tmp_path: Path) -> None:
    """The full scale builds the same run configs as `jestbench run full`'s `shapes` section for the
    seven configurations they share, so those runs are found complete rather than trained again."""
    from harness.reproduce import FULL, Context
    from harness.suites import load_suite

    (section,) = [s for s in load_suite("full").sections if s.name == "shapes"]
    suite_ids = {c.run_id for c in section.run_configs(tiny_dataset, ["reference-hash"])}
    ctx = Context(tmp_path, tiny_dataset, FULL, tmp_path / "out")
    ctx._reference = {"hash": "reference-hash"}
    configurations = (
        ("uniform", None, 0.0),
        ("uniform", {"two_resolution": True}, 0.0),
        ("hard-learner", None, 0.8),
        ("easy-reference", None, 0.8),
        ("learnability", None, 0.8),
        ("jest", {"gain": FULL.gain, "score": "learnability"}, 0.8),
        ("flexi-jest", None, 0.8),
    )
    shared = [
        ctx.config(name, params, filter_ratio=f, seed=seed)
        for name, params, f in configurations
        for seed in FULL.seeds
    ]
    assert len(shared) == 7 * len(FULL.seeds) and {c.run_id for c in shared} <= suite_ids


def test_super_batch_larger_than_the_pool_is_not_testable(tiny_dataset: Dataset, tmp_path: Path) -> None:
    """At the full scale (B = 640 at f = 0.8) the tiny pool of 384 holds no super-batch: the selection
    claims say so, before training anything."""
    from harness.reproduce import FULL, Context

    ctx = Context(tmp_path, tiny_dataset, FULL, tmp_path / "out")
    for claim in CLAIMS[:3]:
        outcome = claim.measure(ctx)
        assert outcome.verdict.verdict == NOT_TESTABLE
        assert (
            outcome.verdict.reason == "a super-batch of B = 640 does not fit in the raw pool of 384 samples"
        )
    assert not (tmp_path / "runs").exists()


def test_gibbs_runs_until_it_finds_a_planted_best_sub_batch() -> None:
    """A matrix whose best sub-batch is known (8 candidates of 40 with M_ij = 1 among themselves,
    0 elsewhere): the chain converges on exactly those 8, joint learnability 8, and its trace rises
    to it. A block of 2,000 proposals is eight times the 8 · 32 possible swaps, so a block that adds
    nothing means no improving swap is left."""
    from harness.reproduce.selection import gibbs_to_convergence

    generator = torch.Generator().manual_seed(0)
    planted = torch.randperm(40, generator=generator)[:8]
    matrix = torch.zeros(40, 40, dtype=torch.float64)
    matrix[planted.unsqueeze(1), planted.unsqueeze(0)] = 1.0
    trace: list[float] = []
    chain = gibbs_to_convergence(
        matrix, 8, gain=10.0, block=2000, max_blocks=50, generator=generator, trace=trace
    )
    assert chain.converged and chain.proposals < 50 * 2000
    assert set(chain.index.tolist()) == set(planted.tolist())
    assert joint_learnability(matrix, chain.index) == 8.0 and trace[-1] == pytest.approx(8.0)


def _mechanism_rows(name: str, seeds: int, *, first: int, last: int, evaluations: int = 2) -> list[dict]:
    """Rows of ``seeds`` simulated runs: of 100 picks per eighth, ``first`` redundant in eighth 1 and
    ``last`` in eighth 8 (plus the seed), the rest clean; redundant probes' learnability from 1.0 at the
    first evaluation down to 0.2 at the last; 16 redundant probes."""
    from harness.data import NOISE_KINDS

    rows = []
    for seed in range(seeds):
        eighths = []
        for e in range(8):
            redundant = first if e == 0 else last + seed if e == 7 else 30
            counts = {f"selected_{k}": 0 for k in NOISE_KINDS} | {f"super_{k}": 50 for k in NOISE_KINDS}
            counts |= {"selected_redundant": redundant, "selected_clean": 100 - redundant}
            eighths.append({"steps": 1, "selected_repeats": 0, "super_repeats": 0, **counts})
        for k in range(evaluations):
            rows.append(
                {
                    "config_key": name,
                    "run_id": f"{name}-{seed}",
                    "evaluation": k,
                    "selection_by_eighth": json.dumps(eighths),
                    "probe_redundant": 16,
                    "probe_learnability_redundant": 1.0 - 0.8 * k / max(1, evaluations - 1) + 0.01 * seed,
                }
            )
    return rows


def test_mechanism_checks_follow_the_redundant_share_and_learnability() -> None:
    """Known answers: redundant picks fall from 50% to about 10% and their learnability from 1.0 to
    0.2, so both comparisons hold; rising picks do not; a run with one evaluation, or a probe without
    redundant samples, gives the reason instead of a number."""
    import pandas as pd

    from harness.reproduce.claims import learnt_kind_checks

    rows = pd.DataFrame(
        _mechanism_rows("falls", 3, first=50, last=10) + _mechanism_rows("rises", 3, first=10, last=50)
    )
    checks, _ = learnt_kind_checks(rows, ("falls", "rises"))
    assert [c.values[0] for c in checks] == pytest.approx([0.4, 0.8, -0.4, 0.8])
    verdict = decide(checks)
    assert verdict.verdict == PARTLY and [r.supports for r in verdict.checks] == [True, True, False, True]

    once = pd.DataFrame(_mechanism_rows("once", 3, first=50, last=10, evaluations=1))
    checks, reason = learnt_kind_checks(once, ("once",))
    assert [len(c.values) for c in checks] == [3, 0] and reason == "fewer than two evaluations per run"
    empty = once.assign(probe_redundant=0, evaluation=0)
    single = pd.DataFrame(_mechanism_rows("one", 1, first=50, last=10))
    _, reason = learnt_kind_checks(pd.concat([empty, single]), ("once", "one"))
    assert reason == "no redundant samples in the probe set; one seed: no paired test"
