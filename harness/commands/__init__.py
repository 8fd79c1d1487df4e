"""Sub-commands of the ``jestbench`` CLI; see :mod:`harness.cli`."""
