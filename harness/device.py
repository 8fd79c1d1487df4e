"""Where a run computes: the device (CPU or a CUDA GPU) and the precision of its forward passes.

``--device auto`` (the default) picks CUDA when torch sees a GPU and the CPU otherwise; the choice is
resolved when the run's config is made, so the config (and the rows' provenance) names the device
that ran. Data stays uint8 on the host until a step moves the images it needs to the device
(:func:`to_device`); the model normalises pixels there. ``bf16`` runs the training and scoring
forward passes under CUDA autocast (weights, optimiser state and evaluation stay fp32); on the CPU
only ``fp32`` is offered, so the CPU path is exactly what it was before devices existed.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from harness.errors import UserError
from strategies import Embeddings

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


class DeviceError(UserError):
    """A device or precision this machine or this device cannot run; the message says what to use."""


def resolve_device(name: str) -> str:
    """``"cpu"`` or ``"cuda"`` for ``--device NAME``; ``auto`` picks CUDA when a GPU is present."""
    if name not in DEVICES:
        raise DeviceError(f"--device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda: torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}); use --device cpu, or install a CUDA build of torch"
        )
    return name


def check_precision(precision: str, device: str) -> str:
    """``precision`` if ``device`` runs it; bf16 is for CUDA only (the CPU path stays fp32, exact)."""
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device != "cuda":
        raise DeviceError(
            f"--precision bf16 runs on CUDA only; this run is on {device}: use --precision fp32 or --device cuda"
        )
    return precision


def torch_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device of a process: ``cuda:LOCAL_RANK`` (one GPU per process) or the CPU."""
    if device == "cuda":
        resolve_device("cuda")  # the one-line error, should a config made elsewhere name CUDA
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed precision for the forward passes of a step; nothing at all for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


def fp32_loss(
    loss: Callable[..., torch.Tensor], device: torch.device, precision: str
) -> Callable[..., torch.Tensor]:
    """``loss`` computed in fp32 with autocast off, on embeddings widened to fp32 (the sigmoid
    loss's logits and softplus lose too much in bf16); ``loss`` itself for fp32 runs."""
    if precision == "fp32":
        return loss

    def widened(image: torch.Tensor, text: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(device.type, enabled=False):
            return loss(image.float(), text.float(), *args, **kwargs)

    return widened


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` (the same tensor when it is there already: the CPU path copies nothing)."""
    return tensor.to(device, non_blocking=True)


def embeddings_to(embeddings: Embeddings, device: torch.device) -> Embeddings:
    """Embeddings on ``device`` in fp32 (a bf16 forward's outputs are widened for selection)."""
    image, text = embeddings.image, embeddings.text
    if image.device == device and image.dtype == torch.float32 and text.dtype == torch.float32:
        return embeddings
    return Embeddings(
        image.to(device, torch.float32), text.to(device, torch.float32), embeddings.scale, embeddings.bias
    )


def describe(device: torch.device) -> str:
    """The device's name for provenance: the GPU's model, or ``cpu``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def add_device_arguments(parser: argparse.ArgumentParser, *, suite: bool = False) -> None:
    """``--device`` and ``--precision``; with ``suite``, they default to the suite's own keys."""
    where = "the suite's device key, else auto" if suite else "auto"
    precision = "the suite's precision key, else fp32" if suite else "fp32"
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=None if suite else "auto",
        help=f"where to compute: auto (CUDA when present), cpu or cuda (default: {where})",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None if suite else "fp32",
        help=f"forward-pass precision: fp32, or bf16 autocast on CUDA (default: {precision})",
    )
