"""``jestbench publish``: a rendered leaderboard replaces the published one in results/, and nothing
else there changes; leaderboards that left runs out are refused unless asked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from synthetic_runs import Suite, write_suite

from harness.cli import main
from harness.errors import UserError
from harness.leaderboard import leaderboard_dir, render_leaderboard
from harness.publish import PublishError, find_leaderboard, publish
from harness.results import read_runs


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with its content's hash."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Suite]:
    """A work directory with two leaderboards: 'full' (complete runs only) and 'all' (with a failed
    and an unfinished run)."""
    work = tmp_path_factory.mktemp("work")
    suite = write_suite(work, names=("uniform", "jest", "hard-learner"))
    complete = [i for ids in suite.run_ids.values() for i in ids]
    render_leaderboard(read_runs(work, complete), leaderboard_dir(work, "full"), title="full suite")
    render_leaderboard(read_runs(work, complete[:3]), leaderboard_dir(work, "small"), title="uniform only")
    render_leaderboard(read_runs(work), leaderboard_dir(work, "all"), title="everything")
    return work, suite


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """A results/ directory with other published material and an earlier leaderboard."""
    results = tmp_path / "results"
    (results / "bench").mkdir(parents=True)
    (results / "bench" / "flops.md").write_text("# FLOPs\n")
    (results / "bench" / "data.csv").write_text("what,seconds\nbuild,37\n")
    (results / "tuning" / "jest").mkdir(parents=True)
    (results / "tuning" / "jest" / "study.csv").write_text("trial,value\n0,0.4\n")
    return results


def test_publish_replaces_the_leaderboard_and_leaves_the_rest(
    rendered: tuple[Path, Suite], results_dir: Path
) -> None:
    work, _ = rendered
    others = {name: _tree(results_dir / name) for name in ("bench", "tuning")}
    first = publish(find_leaderboard("small", work), results_dir)
    assert not first.replaced
    assert "uniform only" in (results_dir / "leaderboard" / "leaderboard.md").read_text()
    (results_dir / "leaderboard" / "figures" / "stale.png").write_bytes(b"from an older leaderboard")

    second = publish(find_leaderboard("full", work), results_dir)
    assert second.replaced and second.left_out == ()
    published = results_dir / "leaderboard"
    assert _tree(published) == _tree(leaderboard_dir(work, "full"))  # the stale figure is gone
    assert {"rows.csv", "leaderboard.csv", "leaderboard.html", "leaderboard.md"} <= {
        p.name for p in published.iterdir()
    }
    assert {name: _tree(results_dir / name) for name in ("bench", "tuning")} == others
    assert sorted(p.name for p in results_dir.iterdir()) == ["bench", "leaderboard", "tuning"]


def test_a_leaderboard_that_left_runs_out_is_refused_unless_allowed(
    rendered: tuple[Path, Suite], results_dir: Path
) -> None:
    work, suite = rendered
    source = find_leaderboard("all", work)
    with pytest.raises(
        PublishError, match=r"left out 2 failed or unfinished run\(s\).*--allow-incomplete"
    ) as err:
        publish(source, results_dir)
    assert suite.failed in str(err.value) and "the training loss holds NaN" in str(err.value)
    assert not (results_dir / "leaderboard").exists()
    published = publish(source, results_dir, allow_incomplete=True)
    assert len(published.left_out) == 2
    assert suite.running in (results_dir / "leaderboard" / "leaderboard.md").read_text()


def test_publish_never_deletes_what_is_not_a_leaderboard(
    rendered: tuple[Path, Suite], results_dir: Path
) -> None:
    (results_dir / "leaderboard").mkdir()
    (results_dir / "leaderboard" / "notes.md").write_text("hand-written")
    with pytest.raises(UserError, match="does not hold a published leaderboard"):
        publish(find_leaderboard("full", rendered[0]), results_dir)
    assert (results_dir / "leaderboard" / "notes.md").read_text() == "hand-written"


def test_an_unknown_source_lists_the_leaderboards_there_are(rendered: tuple[Path, Suite]) -> None:
    with pytest.raises(PublishError, match=r"'quick' is neither .* leaderboards in .*: all, full, small"):
        find_leaderboard("quick", rendered[0])


def test_cli(rendered: tuple[Path, Suite], results_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, _ = rendered
    assert main(["publish", "all", "--work", str(work), "--results", str(results_dir)]) == 2
    assert "--allow-incomplete" in capsys.readouterr().err
    assert main(["publish", "--work", str(work), "--results", str(results_dir)]) == 0  # 'full' by default
    assert f"created {results_dir / 'leaderboard'}" in capsys.readouterr().out
    source = str(leaderboard_dir(work, "all"))  # by path
    assert (
        main(["publish", source, "--results", str(results_dir), "--allow-incomplete", "--work", str(work)])
        == 0
    )
    out = capsys.readouterr().out
    assert "replaced" in out and "published although it left out run" in out
