"""One run over K processes: torchrun (or :func:`launch`, its API) and DistributedDataParallel.

docs/DISTRIBUTED.md is the user's guide. What a step does with ``K > 1`` ranks (gloo on the CPU,
NCCL on GPUs; one process per GPU):

- Each rank streams its disjoint ``B/K`` of every super-batch (``SuperBatchStream(rank=,
  world_size=)``); the ranks' shares together are exactly one process's super-batch of ``B``.
- **global** selection (the default): the learner's embeddings of each share (and the reference's)
  are all-gathered, so every rank holds the whole super-batch's, in rank order; every rank runs the
  same selection with the same generator and gets the same ``b`` indices, which are those one process
  would choose from the same super-batch. Each part of the training plan's split (Flexi-JEST's halves)
  is cut into K equal slices; rank ``r`` trains on slice ``r`` of each, the chosen samples it does not
  hold coming from their owners by one all-to-all of uint8 pixels and tokens.
- **local** selection: each rank selects ``b/K`` out of its own ``B/K`` with a generator of its own.
- The loss is SigLIP's over the whole sub-batch of ``b``: each rank's image rows against every rank's
  texts, all-gathered with their gradient (``torch.distributed.nn.functional.all_gather``, as
  open_clip's SigLIP loss does), each rank's sum divided by its own row count so that DDP's average
  of the gradients is the gradient of the one-process loss.
- FLOPs: every rank charges the ledger the whole step's cost (``F·B`` scoring over the K shares,
  ``3F·b`` training); the pairwise products and the strategy's own counted products (``selection``)
  of a global selection, which every rank computes alike, are charged once, those of local
  selections summed over ranks. Ledgers thus agree on every rank
  (so every rank stops at the same step) and equal one process's for the same ``b`` and ``B``.
  Communication is counted apart, in bytes (:class:`Communication`), never as FLOPs.
- Rank 0 evaluates, checkpoints and writes the run file (atomically); the other ranks wait for it at
  their next collective. A rank that fails ends the run: torchrun's agent stops the others, and every
  collective has the process group's timeout (``JESTBENCH_DIST_TIMEOUT`` seconds, default 900), so no
  rank waits for ever on one that hangs.

With ``K = 1`` none of this runs: :class:`Ranks` is a pass-through and the step is the one-process
step, operation for operation.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from harness.device import torch_device
from harness.errors import UserError
from harness.losses import sigmoid_loss
from strategies import Embeddings, Needs

SCOPES = ("global", "local")
TIMEOUT_ENV = "JESTBENCH_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 900.0

T = TypeVar("T")
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFunction = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, images, tokens) -> loss


class DistributedError(UserError):
    """A run that cannot be spread over its ranks as asked, or a rank that failed (named)."""


def environment_world_size() -> int:
    """The number of ranks torchrun started (``WORLD_SIZE``), 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def timeout() -> datetime.timedelta:
    """How long a collective may wait for the slowest rank before the run fails."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if seconds <= 0:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r} must be > 0 seconds")
    return datetime.timedelta(seconds=seconds)


def init_process_group(device: str) -> None:
    """Join torchrun's process group (NCCL for CUDA, gloo for the CPU), once per process."""
    if dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timeout())


def leave_process_group() -> None:
    """Leave the process group :func:`init_process_group` joined, if any (NCCL wants it said)."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (building data, say), the other ranks after it, when it is done."""
    distributed = dist.is_initialized() and dist.get_world_size() > 1
    if distributed and dist.get_rank() != 0:
        dist.barrier()
    yield
    if distributed and dist.get_rank() == 0:
        dist.barrier()


def check_layout(world_size: int, scope: str, batch_size: int, super_batch_size: int, parts: int) -> None:
    """Refuse a split of ``b`` and ``B`` over ``K`` ranks that is not exact."""
    if world_size < 1:
        raise DistributedError(f"a run needs at least one process; got {world_size}")
    if scope not in SCOPES:
        raise DistributedError(f"--selection-scope {scope!r} is not one of {', '.join(SCOPES)}")
    if world_size == 1:
        return
    if super_batch_size % world_size:
        raise DistributedError(
            f"B={super_batch_size} does not split over {world_size} ranks: choose b and f so that B is a multiple of {world_size}"
        )
    if batch_size % (world_size * parts):
        plan = f" at {parts} resolutions" if parts > 1 else ""
        raise DistributedError(
            f"b={batch_size} trained{plan} does not split over {world_size} ranks: b must be a multiple of {world_size * parts}"
        )


class Communication:
    """Bytes the ranks exchange, by kind, summed over ranks (what each rank receives): the cost model
    counts them apart from FLOPs. Pickled bookkeeping (captions, noise kinds) and scalars (the loss,
    stop decisions) are not counted in bytes.

    ``seconds`` is this rank's wall time blocked in collectives, by kind (bookkeeping and scalars
    included), for benchmarks; not checkpointed, never part of a result."""

    def __init__(self) -> None:
        self.bytes: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def add(self, kind: str, count: int) -> None:
        self.bytes[kind] += int(count)

    @contextlib.contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - start

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def state_dict(self) -> dict[str, int]:
        return dict(self.bytes)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.bytes = Counter(state)


def gathered_embeddings_bytes(world_size: int, super_batch_size: int, dim: int) -> int:
    """An all-gather of both towers' fp32 embeddings of a super-batch: each rank receives the
    other ranks' ``(K-1)/K`` of ``B x 2d``."""
    return (world_size - 1) * super_batch_size * 2 * dim * 4


def gathered_text_bytes(world_size: int, batch_size: int, dim: int) -> int:
    """The loss's all-gather of the texts of the sub-batch and, in backward, the reduce-scatter of
    their gradients (fp32)."""
    return 2 * (world_size - 1) * batch_size * dim * 4


def gradient_bytes(world_size: int, parameters: int) -> int:
    """DDP's ring all-reduce of fp32 gradients: ``2(K-1)/K`` of them received by each rank."""
    return 2 * (world_size - 1) * parameters * 4


def step_communication(
    needs: Needs,
    world_size: int,
    scope: str,
    batch_size: int,
    super_batch_size: int,
    embed_dim: int,
    parameters: int,
    sample_bytes: int,
) -> dict[str, float]:
    """Bytes a step exchanges over ``world_size`` ranks, by kind, summed over ranks, as the ranks
    count them; ``samples`` is its expectation when the chosen samples are spread evenly over the
    ranks (a global selection moves the chosen ones held by another rank than the one training them)."""
    if world_size == 1:
        return {}
    sent: dict[str, float] = {
        "gradients": gradient_bytes(world_size, parameters),
        "loss_texts": gathered_text_bytes(world_size, batch_size, embed_dim),
    }
    if scope == "global":
        models = int(needs.learner) + int(needs.reference)
        if models:
            sent["embeddings"] = models * gathered_embeddings_bytes(world_size, super_batch_size, embed_dim)
        sent["samples"] = batch_size * (world_size - 1) / world_size * sample_bytes
    return sent


class _StepModule(nn.Module):
    """The step's forward as a module, so that DDP sees one forward per step and syncs the gradients
    of every parameter of ``model`` (the loop calls the model's towers, not its ``forward``)."""

    def __init__(self, model: nn.Module, forward: StepFunction):
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self._forward(self.model, images, tokens)


class Ranks:
    """The processes of one run and what a step exchanges between them; a pass-through for one.

    Built by :meth:`start` from the run's ``world_size`` and ``selection_scope``; the training step
    (:class:`harness.step.Stepper`) calls its methods unconditionally.
    """

    def __init__(self, world_size: int, scope: str, device: str) -> None:
        self.world_size = world_size
        self.scope = scope
        self.distributed = world_size > 1
        if self.distributed:
            found = environment_world_size()
            if found != world_size:
                raise DistributedError(
                    f"this run is for {world_size} processes and {found} were started: start it with "
                    f"`torchrun --nproc-per-node {world_size} -m harness train ...` or `jestbench run SUITE --nproc {world_size}`"
                )
            self._owns_group = not dist.is_initialized()
            init_process_group(device)
            self.rank = dist.get_rank()
            self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        else:
            self.rank, self.local_rank, self._owns_group = 0, 0, False
        self._ddp: nn.parallel.DistributedDataParallel | None = None
        self.device = torch_device(device, self.local_rank)
        self.communication = Communication()

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that evaluates and writes."""
        return self.rank == 0

    @property
    def gathers(self) -> bool:
        """Whether selection sees the whole super-batch, gathered from every rank."""
        return self.distributed and self.scope == "global"

    def close(self) -> None:
        """Wait for every rank (rank 0's files are then written) and leave the process group if this
        run started it (a caller that started it, such as ``jestbench train``, may train again)."""
        if self.distributed and dist.is_initialized():
            dist.barrier()
            if self._owns_group:
                dist.destroy_process_group()

    # -- sizes ---------------------------------------------------------------------------------

    def share(self, size: int) -> int:
        """This rank's part of ``size`` samples (``b`` or ``B``)."""
        return size // self.world_size

    def selection_size(self, batch_size: int) -> int:
        """How many samples this rank's selection chooses: ``b``, or ``b/K`` when selecting locally."""
        return batch_size if self.gathers or not self.distributed else self.share(batch_size)

    def view_size(self, local_size: int) -> int:
        """The size of the super-batch the selection sees."""
        return local_size * self.world_size if self.gathers else local_size

    def generator(self, seed: int) -> torch.Generator:
        """The selection's generator: the run's seed on every rank of a global selection (they must
        agree), a seed of each rank's own for local selections (rank 0's is the run's)."""
        if self.distributed and not self.gathers and self.rank:
            seed = int(np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0] >> 1)
        return torch.Generator().manual_seed(seed)

    # -- selection -------------------------------------------------------------------------------

    def scoring(self, source: Callable[[], Embeddings] | None) -> Callable[[], Embeddings] | None:
        """A view source of the whole super-batch when selecting globally: this rank's embeddings,
        all-gathered when first asked (every rank asks at the same point of the same selection)."""
        if source is None or not self.gathers:
            return source
        compute = source

        def gathered() -> Embeddings:
            return self.gather_embeddings(compute())

        return gathered

    def gather_embeddings(self, embeddings: Embeddings) -> Embeddings:
        """The embeddings of every rank's share, in rank order (no gradient)."""
        image, text = embeddings.image.contiguous(), embeddings.text.contiguous()
        images = [torch.empty_like(image) for _ in range(self.world_size)]
        texts = [torch.empty_like(text) for _ in range(self.world_size)]
        with self.communication.timed("embeddings"):
            dist.all_gather(images, image)
            dist.all_gather(texts, text)
        self.communication.add(
            "embeddings",
            gathered_embeddings_bytes(self.world_size, self.view_size(len(image)), image.shape[1]),
        )
        return Embeddings(torch.cat(images), torch.cat(texts), embeddings.scale, embeddings.bias)

    def pairwise(self, macs: int) -> int:
        """Multiply-adds of a selection to charge (the view's pairwise products, the strategy's own
        counted by :func:`harness.view.select_counted`): a global selection's once, every rank
        having run the same, local ones summed over ranks."""
        if not self.distributed or self.gathers:
            return macs
        return int(self.sum(float(macs)))

    # -- training --------------------------------------------------------------------------------

    def training_batch(
        self, index: torch.Tensor, images: torch.Tensor, tokens: torch.Tensor, parts: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The images (uint8) and tokens this rank trains on, on its device.

        One process, or a local selection: the selected rows of its own share. A global selection:
        slice ``rank`` of each of the plan's ``parts`` of the ``b`` chosen, fetched from the ranks
        that hold them by one all-to-all each of pixels and tokens.
        """
        index = index.cpu()
        if not self.gathers:
            return images[index].to(self.device, non_blocking=True), tokens[index].to(
                self.device, non_blocking=True
            )
        held = len(images)
        slices = index.view(parts, self.world_size, -1)
        wanted = [slices[:, rank].reshape(-1) for rank in range(self.world_size)]
        send = [w[w // held == self.rank] - self.rank * held for w in wanted]
        mine = wanted[self.rank]
        owners = mine // held
        received = [int((owners == source).sum()) for source in range(self.world_size)]
        sent = [len(s) for s in send]
        rows = torch.cat(send)
        out_images = self._exchange(images[rows], received, sent)
        out_tokens = self._exchange(tokens[rows], received, sent)
        moved = sum(int((w // held != rank).sum()) for rank, w in enumerate(wanted))
        sample_bytes = images[0].numel() * images.element_size() + tokens[0].numel() * tokens.element_size()
        self.communication.add("samples", moved * sample_bytes)
        # The all-to-all delivers by source rank; put the rows back in this rank's order.
        order = torch.argsort(owners, stable=True)
        back = torch.empty_like(order)
        back[order] = torch.arange(len(order))
        return out_images[back], out_tokens[back]

    def _exchange(self, rows: torch.Tensor, received: list[int], sent: list[int]) -> torch.Tensor:
        rows = rows.to(self.device, non_blocking=True).contiguous()
        out = torch.empty((sum(received), *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        with self.communication.timed("samples"):
            dist.all_to_all_single(out, rows, received, sent)
        return out

    def contrastive_loss(
        self, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """SigLIP's loss of this rank's rows against the whole sub-batch's texts, gathered with their
        gradient; one process: the plain batch loss."""
        if not self.distributed:
            return sigmoid_loss(image, text, scale, bias)
        with warnings.catch_warnings():
            # Deprecated in torch 2.13 in favour of a private functional API; still PyTorch's own
            # autograd all-gather (backward: reduce-scatter on NCCL, all-to-all and sum on gloo).
            warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather", FutureWarning)
            with self.communication.timed("loss_texts"):
                texts = dist_nn.all_gather(text.contiguous())  # type: ignore[no-untyped-call]
        self.communication.add(
            "loss_texts", gathered_text_bytes(self.world_size, len(text) * self.world_size, text.shape[1])
        )
        return sigmoid_loss(image, torch.cat(texts), scale, bias, first_row=self.rank * len(image))

    def training_forward(self, model: nn.Module, forward: StepFunction) -> Forward:
        """``forward(model, images, tokens)`` -> loss as the step runs it: wrapped in DDP for K ranks,
        whose backward averages the gradients over ranks."""
        if not self.distributed:
            return lambda images, tokens: forward(model, images, tokens)
        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(_StepModule(model, forward), device_ids=ids)
        self._ddp = wrapped
        parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def run(images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            self.communication.add("gradients", gradient_bytes(self.world_size, parameters))
            loss: torch.Tensor = wrapped(images, tokens)
            return loss

        return run

    def time_gradients(self) -> None:
        """Time DDP's gradient all-reduce (for benchmarks): from each bucket's launch to its end,
        which overlaps the rest of the backward pass, so an upper bound of what it costs."""
        if not self.distributed:
            return
        seconds = self.communication.seconds

        def hook(_state, bucket):  # type: ignore[no-untyped-def]
            # Unannotated: DDP refuses annotations that are not its own classes (these would be strings).
            start = time.perf_counter()
            tensor = bucket.buffer().div_(self.world_size)
            work: Any = dist.all_reduce(tensor, async_op=True)
            future: torch.futures.Future[Any] = work.get_future()

            def done(f: torch.futures.Future[Any]) -> torch.Tensor:
                seconds["gradients"] += time.perf_counter() - start
                result: torch.Tensor = f.value()[0]
                return result

            timed: torch.futures.Future[torch.Tensor] = future.then(done)
            return timed

        assert self._ddp is not None, "time_gradients() after training_forward()"
        self._ddp.register_comm_hook(None, hook)

    # -- agreeing and counting -------------------------------------------------------------------

    def sum(self, value: float) -> float:
        """``value`` summed over ranks (float64)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        with self.communication.timed("scalars"):
            dist.all_reduce(tensor)
        return float(tensor[0])

    def mean(self, value: float) -> float:
        """``value`` averaged over ranks: the step's loss over the whole sub-batch."""
        return value if not self.distributed else self.sum(value) / self.world_size

    def agree(self, decision: bool) -> bool:
        """Rank 0's ``decision`` on every rank (when to checkpoint: clocks differ between ranks)."""
        if not self.distributed:
            return decision
        tensor = torch.tensor([int(decision)], device=self.device)
        with self.communication.timed("scalars"):
            dist.broadcast(tensor, 0)
        return bool(tensor[0])

    def gather(self, value: T) -> list[T]:
        """``value`` from every rank, in rank order (pickled: bookkeeping only)."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        with self.communication.timed("bookkeeping"):
            dist.all_gather_object(values, value)
        return values

    def selected(self, index: torch.Tensor, items: Sequence[T]) -> tuple[list[T], list[T]]:
        """``(items of the selection, items of the super-batch)`` over the whole step, for the counts
        of a run's rows (noise kinds and repeated captions of what was chosen and offered)."""
        picks = index.tolist()
        if not self.distributed:
            return [items[i] for i in picks], list(items)
        shares = self.gather(list(items))
        offered = [item for share in shares for item in share]
        if self.gathers:
            return [offered[i] for i in picks], offered
        chosen = self.gather(picks)
        return [share[i] for share, pick in zip(shares, chosen, strict=True) for i in pick], offered

    def generator_state(self, generator: torch.Generator) -> torch.Tensor | list[torch.Tensor]:
        """What a checkpoint keeps of the selection's generator: every rank's when they differ."""
        if not self.distributed or self.gathers:
            return generator.get_state()
        return self.gather(generator.get_state())

    def own_generator_state(self, saved: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """This rank's generator state from a checkpoint's."""
        if isinstance(saved, list):
            if len(saved) != self.world_size:
                raise DistributedError(
                    f"the checkpoint is of a run over {len(saved)} ranks; resume it with {len(saved)} processes"
                )
            return saved[self.rank]
        return saved


def launch(entrypoint: Callable[..., Any], args: Sequence[Any], nproc: int, name: str) -> Any:
    """Run ``entrypoint(*args)`` on ``nproc`` local ranks through torchrun's own API
    (``elastic_launch``, rendezvous on a free local port) and return what rank 0 returned; a rank's
    failure ends the others and is raised here as a :class:`DistributedError` carrying that rank's
    error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=name,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        returned = elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise DistributedError(f"rank {rank} of {nproc} failed: {failure_message(failure)}") from None
    return returned[0]


def failure_message(failure: Any) -> str:
    """The failed rank's error as one line: its exception's last line, else its exit code."""
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [line for line in str(message or "").strip().splitlines() if line.strip()]
    if lines and not str(message).startswith("To enable traceback"):
        return lines[-1].strip()
    return f"exit code {failure.exitcode}"
