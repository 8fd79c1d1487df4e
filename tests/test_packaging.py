"""The package's own metadata: setuptools reads pyproject.toml without a deprecation warning, and the
build backend it asks for understands what it says."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

REPO = Path(__file__).resolve().parents[1]
# The first setuptools that reads `project.license` as an SPDX expression (PEP 639); 77.0.3 fixed its
# handling of license files.
SPDX_SETUPTOOLS = Version("77.0.3")


def test_setuptools_reads_the_metadata_without_a_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"


def test_the_build_backend_required_reads_an_spdx_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)
    (setuptools,) = (
        r for r in map(Requirement, project["build-system"]["requires"]) if r.name == "setuptools"
    )
    lowest = min(Version(s.version) for s in setuptools.specifier if s.operator == ">=")
    assert lowest >= SPDX_SETUPTOOLS
