"""jestbench's harness: data, models, losses, FLOP accounting, the training loop, evaluation,
runner, results, leaderboards, tuning and the CLI. Strategies live in :mod:`strategies`."""

__version__ = "0.1.0"
