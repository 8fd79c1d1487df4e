"""``python -m harness`` is ``jestbench``."""

from harness.cli import main

raise SystemExit(main())
