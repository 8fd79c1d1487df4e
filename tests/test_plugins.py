"""Plugin discovery end to end: packages installed for real into a temporary target directory, seen
through importlib.metadata in a subprocess (so parallel test workers never see the registry change)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Learning

from harness.records import RunFile

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "jestbench-example-plugin"


def _pip_install(package: Path, target: Path, *, editable: bool = False) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    source = ["-e", str(package)] if editable else [str(package)]
    subprocess.run([*command, "--target", str(target), *source], check=True, capture_output=True)


def _package(root: Path, name: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """A plugin distribution ``name`` in ``root``: each module's ``__init__.py`` and the entry points."""
    for module, source in modules.items():
        (root / module).mkdir(parents=True)
        (root / module / "__init__.py").write_text(textwrap.dedent(source))
    points = "\n".join(f'{point} = "{target}"' for point, target in entry_points.items())
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=69"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "0.0.1"
            [project.entry-points."jestbench.strategies"]
            """
        ).format(name=name)
        + points
        + f"\n[tool.setuptools]\npackages = {sorted(modules)!r}\n".replace("'", '"')
    )
    return root


def _broken_package(root: Path) -> Path:
    """A plugin package with three bad entry points: one whose module fails to import, one whose name
    is taken by a built-in, and one whose class calls itself by another name."""
    misnamed = """
        import torch
        import jestbench

        class FirstB(jestbench.Strategy):
            name = "first-b"

            def select(self, view, batch_size, generator):
                return torch.arange(batch_size)
        """
    return _package(
        root,
        "jestbench-broken-plugin",
        {
            "jestbench_broken": "raise ImportError('a dependency is missing')\n",
            "jestbench_misnamed": misnamed,
        },
        {
            "broken-rule": "jestbench_broken:Rule",
            "jest": "jestbench_broken:Jest",
            "misnamed": "jestbench_misnamed:FirstB",
        },
    )


def _raising_package(root: Path) -> Path:
    """A plugin whose selection raises after ``fail_after`` calls (the harness predicts a step's cost
    with one call before the run starts)."""
    rule = """
        import torch
        import jestbench

        class Rule(jestbench.Strategy):
            name = "raising-rule"
            params = (jestbench.Param("fail_after", int, 1, "calls that succeed", low=0),)
            calls = 0

            def select(self, view, batch_size, generator):
                Rule.calls += 1
                if Rule.calls > self.config["fail_after"]:
                    raise ValueError("the scores went negative")
                return torch.randperm(view.size, generator=generator)[:batch_size]
        """
    return _package(
        root,
        "jestbench-raising-plugin",
        {"jestbench_raising": rule},
        {"raising-rule": "jestbench_raising:Rule"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    # A private copy: setuptools builds in the source tree, and two xdist workers building the same
    # tree at once collide on its build/ directory.
    example = shutil.copytree(
        EXAMPLE,
        tmp_path_factory.mktemp("example") / EXAMPLE.name,
        ignore=shutil.ignore_patterns("build", "*.egg-info"),
    )
    _pip_install(example, target)
    _pip_install(_broken_package(tmp_path_factory.mktemp("broken")), target)
    _pip_install(_raising_package(tmp_path_factory.mktemp("raising")), target)
    return target


def _run(site: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "harness", *args]
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=site)


def test_installed_plugin_is_listed_and_built_through_the_entry_point(site):
    code = textwrap.dedent(
        """
        import json, sys
        import torch
        from strategies import default_registry
        r = default_registry()
        s = r.get_strategy("learnability-mix", fraction=0.25)
        from jestbench import random_view
        index = s.select(random_view(40, seed=0), 8, torch.Generator().manual_seed(0))
        print(json.dumps({"names": r.list_strategies(), "source": r.source("learnability-mix"),
                          "modules": sorted(m for m in sys.modules if m.startswith("jestbench_")),
                          "index": index.tolist(), "errors": r.plugin_errors()}))
        """
    )
    result = _run(site, code=code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "learnability-mix" in report["names"] and "jest" in report["names"]
    assert report["source"] == "plugin from jestbench-example-plugin"
    assert report["modules"] == ["jestbench_example_plugin"]  # the broken plugin was never imported
    assert len(set(report["index"])) == 8


def test_a_broken_plugin_is_named_and_does_not_break_the_others_or_the_listing(site):
    listing = _run(site, "strategies")
    assert listing.returncode == 0, listing.stderr
    assert "learnability-mix" in listing.stdout and "uniform" in listing.stdout
    assert (
        "! jest: plugin 'jest' from package 'jestbench-broken-plugin' (jestbench_broken:Jest) was refused"
        in listing.stdout
    )
    row = next(line for line in listing.stdout.splitlines() if line.startswith("broken-rule"))
    assert "unavailable" in row and "jestbench-broken-plugin" in row and "a dependency is missing" in row

    show = _run(site, "strategies", "show", "broken-rule")
    assert show.returncode == 2
    assert "plugin 'broken-rule' from package 'jestbench-broken-plugin' failed to load" in show.stderr
    assert "Traceback" not in show.stderr


def test_show_and_check_of_a_name_a_plugin_also_claims_say_that_the_plugin_was_refused(site):
    refused = (
        "jestbench: warning: plugin 'jest' from package 'jestbench-broken-plugin' (jestbench_broken:Jest) "
        "was refused: 'jest' is already the built-in strategies.builtin:Jest, which is used here"
    )
    show = _run(site, "strategies", "show", "jest")
    assert show.returncode == 0 and "jest (built-in" in show.stdout
    assert refused in show.stderr
    check = _run(site, "strategies", "check", "jest", "--param", "n_chunks=1")
    assert check.returncode == 0, check.stdout + check.stderr
    assert refused in check.stderr
    assert "warning" not in _run(site, "strategies", "show", "uniform").stderr  # only the name claimed


def test_an_entry_point_named_otherwise_than_its_class_is_warned_about(site):
    mismatch = (
        "plugin 'misnamed' from package 'jestbench-broken-plugin': its class "
        "jestbench_misnamed:FirstB calls itself 'first-b'; it is registered as 'misnamed'"
    )
    show = _run(site, "strategies", "show", "misnamed")
    assert show.returncode == 0, show.stderr
    assert f"jestbench: warning: {mismatch}" in show.stderr
    assert f"! misnamed: {mismatch}" in _run(site, "strategies").stdout
    assert "first-b" not in _run(site, "strategies", "show", "learnability-mix").stderr


def test_flops_lists_every_other_strategy_and_marks_a_broken_plugin(site):
    result = _run(site, "flops", "--preset", "tiny")
    assert result.returncode == 0, result.stderr
    for name in ("uniform", "jest", "learnability-mix", "misnamed"):
        assert f"| {name} | 0.80 | 640 |" in result.stdout
    (marked,) = [line for line in result.stdout.splitlines() if "broken-rule" in line]
    assert (
        "| broken-rule | not counted: plugin 'broken-rule' from package 'jestbench-broken-plugin'" in marked
    )
    assert "ImportError: a dependency is missing" in marked


def test_the_plugin_passes_the_conformance_kit_from_the_cli(site):
    result = _run(site, "strategies", "check", "learnability-mix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 6


def test_the_plugins_own_tests_run_the_kit(site):
    """The example's test file, as its author would run it with pytest."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=site,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


IDENTITY = """
import json
from harness.runconfig import RunConfig
config = RunConfig(dataset="/d", dataset_id="abc", preset="tiny", strategy="learnability-mix",
                   params={"fraction": 0.5}, batch_size=32, filter_ratio=0.8, budget="20 steps",
                   reference="r" * 16)
print(json.dumps({"run_id": config.run_id, "plugin": config.plugin}))
"""


def _identity(site: Path, *, editable: bool = False) -> dict:
    # An editable install into a target directory works through its .pth file: addsitedir reads it.
    prelude = f"import site; site.addsitedir({str(site)!r})\n" if editable else ""
    result = _run(site, code=prelude + IDENTITY)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_plugins_distribution_version_and_source_are_part_of_its_run_id(site, tmp_path: Path):
    """Reinstalled unchanged, the plugin gives the same run id; an editable install whose scoring is
    edited in place (same version, no reinstall) gives a new one, so the edited plugin's runs are
    trained rather than reported from the old rows."""
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(EXAMPLE, tmp_path / "same" / "src", ignore=ignore)
    _pip_install(tmp_path / "same" / "src", tmp_path / "same" / "site")
    shutil.copytree(EXAMPLE, tmp_path / "editable" / "src", ignore=ignore)
    _pip_install(tmp_path / "editable" / "src", tmp_path / "editable" / "site", editable=True)

    original = _identity(site)
    plugin = original["plugin"]
    assert plugin["distribution"] == "jestbench-example-plugin" and plugin["version"] == "0.1.0"
    assert _identity(tmp_path / "same" / "site") == original
    assert _identity(tmp_path / "editable" / "site", editable=True) == original  # the same source

    module = tmp_path / "editable" / "src" / "jestbench_example_plugin" / "__init__.py"
    module.write_text(module.read_text().replace("descending=True", "descending=False"))
    edited = _identity(tmp_path / "editable" / "site", editable=True)
    assert edited["plugin"]["version"] == "0.1.0"
    assert edited["plugin"]["source_sha256"] != plugin["source_sha256"]
    assert edited["run_id"] != original["run_id"]


def _train(site: Path, learning: Learning, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data = ["--data", str(learning.dataset.root), "--reference", learning.reference["hash"]]
    run = ["--preset", "tiny", "-b", "32", "-f", "0.8", "--budget-steps", "20", "--eval-every", "1"]
    return _run(site, "train", *data, *run, "--threads", "1", "--quiet", "--work", str(work), *args)


def test_a_plugin_runs_provenance_names_its_distribution_and_version(site, learning: Learning, tmp_path):
    work = learning.private_work_dir(tmp_path)
    result = _train(site, learning, work, "--strategy", "learnability-mix")
    assert result.returncode == 0, result.stderr
    (path,) = (work / "runs").glob("*.json")
    run = RunFile.load(path)
    assert run.status == "complete" and run.config["plugin"]["distribution"] == "jestbench-example-plugin"
    for record in (run.provenance, *run.rows):
        assert record["strategy_distribution"] == "jestbench-example-plugin"
        assert record["strategy_version"] == "0.1.0"
        assert record["strategy_source_sha256"] == run.config["plugin"]["source_sha256"]


def test_a_strategy_that_raises_in_a_run_fails_it_with_its_name_in_one_line(
    site, learning: Learning, tmp_path
):
    work = learning.private_work_dir(tmp_path)
    result = _train(site, learning, work, "--strategy", "raising-rule")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert "strategy 'raising-rule' raised ValueError: the scores went negative" in line
    (path,) = (work / "runs").glob("*.json")
    run = RunFile.load(path)
    assert run.status == "failed"
    assert run.error.startswith("stopped at step 1: strategy 'raising-rule' raised ValueError")
    assert "jestbench_raising" in run.summary["traceback"]  # where, for the plugin's author
    assert [row["evaluation"] for row in run.rows] == [0, 0]  # the untrained model's rows are kept


def test_a_strategy_that_raises_before_a_run_starts_is_refused_in_one_line(
    site, learning: Learning, tmp_path
):
    work = learning.private_work_dir(tmp_path)
    result = _train(site, learning, work, "--strategy", "raising-rule", "--param", "fail_after=0")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "strategy 'raising-rule' raised ValueError: the scores went negative" in line
    assert "predict" in line
    assert not (work / "runs").exists()
