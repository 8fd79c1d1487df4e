"""Shared test setup: one torch thread per xdist worker (2 cores, `pytest -n auto`)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
