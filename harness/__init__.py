"""jestbench's harness: data, models, losses, FLOP accounting, the training loop, evaluation,
runner, results, leaderboards, tuning and the CLI. Strategies live in :mod:`strategies`."""

import os

__version__ = "0.1.0"

# Read by OpenMP when torch loads, so set here, before the CLI imports torch: threads that wait at
# the end of a parallel region sleep instead of spinning. On a busy machine a spinning thread takes
# the CPU that the thread everyone waits for needs (docs/PERFORMANCE.md measures it). A value the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
