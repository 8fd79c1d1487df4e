"""What a run leaves on disk: its run file (config, provenance, status and evaluation rows, in one JSON
file of its own) and, once complete, its final weights.

A run file lives at ``<work>/runs/<run_id>.json`` and is replaced atomically (write to a temporary
file in the same directory, fsync, rename), so a reader or a killed writer never sees half a file. The
row schema is documented in docs/RESULTS.md and is what :mod:`harness.results` reads with pandas.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch

from harness import __version__
from harness.models import DualEncoder, ModelConfig
from strategies import default_registry

SCHEMA_VERSION = 1
Status = Literal["running", "complete", "failed"]


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-able config: the key that makes a rerun find its run."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """What produced a row: versions, git commit, CPU and thread count (exact results need the same)."""
    return {
        "jestbench_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": _git_commit(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "hostname": platform.node(),
    }


@cache
def strategy_identity(name: str) -> dict[str, str] | None:
    """Which code a plugin strategy's results came from: its distribution, version and a hash of its
    package's source files (an editable install, or a reinstall without a version bump, changes only
    the source). ``None`` for a built-in: jestbench's own version and commit are in :func:`provenance`.
    Computed once per process, from the code this process imported."""
    registry = default_registry()
    package = registry.package(name)
    if package is None:
        return None
    module = registry.get_class(name).__module__
    top = sys.modules[module.split(".")[0]]
    if getattr(top, "__path__", None):  # a package: every file under it
        files = [
            (path.relative_to(root), path)
            for root in map(Path, top.__path__)
            for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        ]
    else:
        single = Path(str(top.__file__))
        files = [(Path(single.name), single)]
    digest = hashlib.sha256()
    for relative, path in files:
        digest.update(f"{relative}\0".encode() + path.read_bytes() + b"\0")
    return {
        "distribution": package,
        "version": importlib.metadata.version(package),
        "source_sha256": digest.hexdigest()[:16],
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Replace ``path`` with ``payload`` as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(path: Path, payload: Any) -> None:
    """``torch.save`` that replaces ``path`` atomically: a kill leaves the old checkpoint or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class RunFile:
    """One run's record. ``rows`` are evaluation points (docs/DESIGN.md §7); ``error`` says why a run failed."""

    run_id: str
    config: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=provenance)
    status: Status = "running"
    error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def path_for(work_dir: Path, run_id: str) -> Path:
        return work_dir / "runs" / f"{run_id}.json"

    def save(self, work_dir: Path) -> Path:
        path = self.path_for(work_dir, self.run_id)
        write_json_atomic(
            path,
            {
                "schema": SCHEMA_VERSION,
                "run_id": self.run_id,
                "status": self.status,
                "error": self.error,
                "config": self.config,
                "provenance": self.provenance,
                "summary": self.summary,
                "rows": self.rows,
            },
        )
        return path

    @classmethod
    def load_complete(cls, work_dir: Path, run_id: str) -> RunFile | None:
        """Run ``run_id``'s file if the run is complete, else ``None``: what lets suites, tuned re-runs and
        :func:`harness.train.train` skip finished work."""
        path = cls.path_for(work_dir, run_id)
        if not path.exists():
            return None
        run = cls.load(path)
        return run if run.status == "complete" else None

    @classmethod
    def load(cls, path: Path) -> RunFile:
        data = json.loads(path.read_text())
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"{path}: run-file schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        return cls(
            run_id=data["run_id"],
            config=data["config"],
            provenance=data["provenance"],
            status=data["status"],
            error=data["error"],
            rows=data["rows"],
            summary=data.get("summary", {}),
        )


def model_path(work_dir: Path, run_id: str) -> Path:
    """Where a complete run keeps its final weights (with the model config that rebuilds them)."""
    return work_dir / "models" / f"{run_id}.pt"


def load_trained_model(work_dir: Path, run_id: str) -> DualEncoder:
    """The final model of complete run ``run_id``, in eval mode."""
    saved = torch.load(model_path(work_dir, run_id), weights_only=True, map_location="cpu")  # a GPU run's too
    model = DualEncoder(ModelConfig(**saved["config"]))
    model.load_state_dict(saved["state"])
    model.eval()
    return model
