"""Tar shards on disk: writing them, and indexing them so that the loader can read any sample.

The loader reads samples by byte offset rather than streaming each tar from the start: that is what
makes the order of samples a pure function of ``(seed, epoch)`` with a skip-ahead that decodes
nothing, and lets several workers and nodes read disjoint samples of the same shard. The offsets come
from a *shard index*, which is made from the bytes on disk and cached under the shard's sha256, so a
changed shard is always indexed afresh.

Indexing is where damage is found (docs/DESIGN.md §5). Python's ``tarfile`` ends a shard silently at a tar
header overwritten with garbage, so the index is built with ``ignore_zeros`` (which steps over
unreadable blocks and finds the members after them) and every gap between members that holds non-zero
bytes is reported; a shard that ends inside a member or without the tar end-of-archive marker is
reported as truncated (the index records it as *cut*: whatever followed is lost, and only a manifest
can say how much). A shard holding no sample at all — a 0-byte file, or a valid tar with no members —
is *empty*, which is not damage but is reported as such by the loader. Samples missing a field or
holding an undecodable field are reported too. Every problem names the sample's key where one can be
named.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webdataset.tariterators import base_plus_ext

from harness.data.samples import (
    CAPTION_EXTENSION,
    IMAGE_EXTENSIONS,
    META_EXTENSION,
    SampleDecodeError,
    check_fields,
)

_INDEX_FORMAT = "jestbench-shard-index"
_INDEX_VERSION = 2
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class SampleEntry:
    """Where one sample's fields lie in its shard: ``(offset, size)`` of each; ``meta`` may be absent."""

    key: str
    image_extension: str
    image: tuple[int, int]
    caption: tuple[int, int]
    meta: tuple[int, int] | None

    def to_row(self) -> list[Any]:
        meta = self.meta or (-1, 0)
        return [self.key, self.image_extension, *self.image, *self.caption, *meta]

    @classmethod
    def from_row(cls, row: list[Any]) -> SampleEntry:
        key, extension, io_, is_, co, cs, mo, ms = row
        return cls(key, extension, (io_, is_), (co, cs), None if mo < 0 else (mo, ms))


@dataclass(frozen=True)
class Problem:
    """Something in a shard that cannot be read: the key it concerns (None when no key can be
    named, e.g. a shard that is not a tar file) and what is wrong."""

    key: str | None
    reason: str

    def describe(self, shard: Path | str) -> str:
        where = f"shard {shard}" + (f", key {self.key!r}" if self.key is not None else "")
        return f"{where}: {self.reason}"


@dataclass
class ShardIndex:
    """The readable samples of one shard (in tar order) and its problems, for the bytes whose
    sha256 is ``sha256``. ``bad_samples`` counts samples that exist but cannot be used; ``cut`` says
    the shard ends early or cannot be read to its end, so that samples after the damage are lost."""

    sha256: str
    size: int
    samples: list[SampleEntry]
    problems: list[Problem] = field(default_factory=list)
    cut: bool = False

    @property
    def bad_samples(self) -> int:
        return len({p.key for p in self.problems if p.key is not None})

    @property
    def empty(self) -> bool:
        """Whether the shard holds no sample at all, not even a damaged one."""
        return not self.samples and not self.problems and not self.cut

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _INDEX_FORMAT,
                "version": _INDEX_VERSION,
                "sha256": self.sha256,
                "size": self.size,
                "samples": [s.to_row() for s in self.samples],
                "problems": [[p.key, p.reason] for p in self.problems],
                "cut": self.cut,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ShardIndex:
        data = json.loads(text)
        if data.get("format") != _INDEX_FORMAT or data.get("version") != _INDEX_VERSION:
            raise ValueError("not a shard index of this version")
        return cls(
            data["sha256"],
            data["size"],
            [SampleEntry.from_row(row) for row in data["samples"]],
            [Problem(key, reason) for key, reason in data["problems"]],
            bool(data["cut"]),
        )


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_fields(fd: int, spans: list[int]) -> tuple[bytes, bytes, bytes | None]:
    """A sample's image, caption and metadata bytes from an open shard, ``spans`` being their
    ``offset, size`` pairs (metadata offset -1 when absent).

    A sample's members usually lie together, so one read covers them when the gaps are small.
    ``os.pread`` has no shared file position: forked workers can share descriptors.
    """
    fields = [(spans[i], spans[i + 1]) for i in (0, 2, 4)]
    present = [(offset, size) for offset, size in fields if offset >= 0]
    first, last = min(o for o, _ in present), max(o + s for o, s in present)
    if last - first <= sum(s for _, s in present) + 8 * _BLOCK:
        block = read_span(fd, first, last - first)
        out = [block[o - first : o - first + s] if o >= 0 else None for o, s in fields]
    else:
        out = [read_span(fd, o, s) if o >= 0 else None for o, s in fields]
    image, caption, meta = out
    assert image is not None and caption is not None
    return image, caption, meta


def read_span(fd: int, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of an open file, or OSError if the file ends first."""
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise OSError(
            f"read {len(data)} of {size} bytes at offset {offset}: the file is shorter than its index"
        )
    return data


class ShardWriter:
    """Writes samples into numbered tar shards ``{prefix}-00000.tar`` of ``shard_size`` samples.

    The tars are reproducible (fixed mtime, owner and mode; USTAR), so the same samples give the same
    sha256. Each finished shard's index is recorded from the offsets written, saving a scan.
    """

    def __init__(self, directory: Path, prefix: str, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError(f"shard size must be >= 1; got {shard_size}")
        self.directory = directory
        self.prefix = prefix
        self.shard_size = shard_size
        self.shards: list[tuple[Path, ShardIndex]] = []
        self._file: io.BufferedWriter | None = None
        self._tar: tarfile.TarFile | None = None
        self._entries: list[SampleEntry] = []
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        """Add one sample; ``fields`` maps extensions to bytes and must hold an image and a caption."""
        if self._tar is None:
            path = self.directory / f"{self.prefix}-{len(self.shards):05d}.tar"
            self._file = open(path, "wb")  # noqa: SIM115 - closed in _finish_shard
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        spans: dict[str, tuple[int, int]] = {}
        for extension in sorted(fields):
            data = fields[extension]
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            self._tar.addfile(info, io.BytesIO(data))
            padded = -(-len(data) // _BLOCK) * _BLOCK
            spans[extension] = (self._tar.offset - padded, len(data))
        image_extension = next(e for e in IMAGE_EXTENSIONS if e in spans)
        self._entries.append(
            SampleEntry(
                key,
                image_extension,
                spans[image_extension],
                spans[CAPTION_EXTENSION],
                spans.get(META_EXTENSION),
            )
        )
        if len(self._entries) == self.shard_size:
            self._finish_shard()

    def _finish_shard(self) -> None:
        assert self._tar is not None and self._file is not None
        self._tar.close()
        self._file.close()
        path = Path(self._file.name)
        index = ShardIndex(sha256_file(path), path.stat().st_size, self._entries)
        self.shards.append((path, index))
        self._tar, self._file, self._entries = None, None, []

    def close(self) -> list[tuple[Path, ShardIndex]]:
        """Finish the last shard; returns every shard written with its index."""
        if self._tar is not None:
            self._finish_shard()
        return self.shards


@dataclass
class _Member:
    name: str
    span: tuple[int, int]
    damage: str | None = None  # why this member's sample cannot be trusted

    @property
    def key(self) -> str | None:
        key: str | None = base_plus_ext(self.name)[0]
        return key


def scan_shard(path: Path, sha256: str, *, check: bool = True) -> ShardIndex:
    """Index a shard from its bytes, reporting what is damaged (see the module docstring).

    With ``check``, every field jestbench reads is decoded once, so that an undecodable image is
    found here, where it can be named and skipped, rather than in the middle of a training run.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        members, problems, cut = _walk(f, size)
        samples = _group(members, problems, _field_checker(f) if check else None)
    return ShardIndex(sha256, size, samples, problems, cut)


def _walk(f: io.BufferedReader, size: int) -> tuple[list[_Member], list[Problem], bool]:
    """The tar members of a shard, stepping over damage, and whether the shard is cut short.

    Damage is pinned on the members next to it: a member lost to an overwritten header belonged to
    the sample before the gap or the one after it, so both are suspect; a shard cut short taints its
    last sample, which may have lost trailing fields.
    """
    if size == 0:
        return [], [], False  # empty: no sample, and nothing damaged
    members: list[_Member] = []

    def holds_data(start: int, end: int) -> bool:
        f.seek(start)
        return bool(f.read(end - start).strip(b"\0"))

    def where() -> str:
        return f"after sample {members[-1].key!r}" if members else "at the start of the shard"

    try:
        tar = tarfile.open(fileobj=f, mode="r:", ignore_zeros=True)  # noqa: SIM115 - f is closed by the caller
    except tarfile.ReadError as err:
        return [], [Problem(None, f"not a readable tar file ({err})")], True
    expected = 0  # where the next header should start
    gap: str | None = None
    while True:
        try:
            info = tar.next()
        except tarfile.ReadError:
            break  # the previous member runs past the end of the file: marked below
        if info is None:
            break
        if info.offset > expected and holds_data(expected, info.offset):
            gap = (
                f"unreadable tar header at byte {expected} ({info.offset - expected} bytes skipped {where()}): "
                "it was overwritten, and the member it described, of this sample or its neighbour, is lost"
            )
            if members:
                members[-1].damage = gap
        expected = info.offset_data + -(-info.size // _BLOCK) * _BLOCK
        if info.isfile():
            members.append(_Member(info.name, (info.offset_data, info.size), gap))
            if info.offset_data + info.size > size:
                members[
                    -1
                ].damage = "the shard ends inside this sample: it was truncated and what followed is lost"
        gap = None
    if not members:
        if holds_data(0, size):
            return (
                [],
                [Problem(None, "no tar member can be read: the file is damaged or not a tar file")],
                True,
            )
        return [], [], False
    cut = any(m.span[0] + m.span[1] > size for m in members)
    if members[-1].damage is None:
        if expected < size and holds_data(expected, size):
            cut = True
            members[-1].damage = (
                f"unreadable bytes from byte {expected} to the end of the shard, {where()}: a damaged or "
                "cut-off tar header; this sample may have lost fields and whatever followed is lost"
            )
        elif expected >= size:
            # A complete tar ends in zero blocks; without them the file was cut after its last member.
            cut = True
            members[-1].damage = (
                "the shard ends after this sample without the tar end-of-archive marker: it was truncated, "
                "this sample may have lost fields and whatever followed is lost"
            )
    return members, [], cut


def _field_checker(f: io.BufferedReader) -> Callable[[dict[str, tuple[int, int]], str], None]:
    def check(spans: dict[str, tuple[int, int]], image_extension: str) -> None:
        fields = {}
        for extension in (image_extension, CAPTION_EXTENSION, META_EXTENSION):
            if extension in spans:
                f.seek(spans[extension][0])
                fields[extension] = f.read(spans[extension][1])
        check_fields(fields, image_extension)

    return check


def _group(
    members: list[_Member],
    problems: list[Problem],
    check: Callable[[dict[str, tuple[int, int]], str], None] | None,
) -> list[SampleEntry]:
    """Group members into samples by key (consecutive members sharing a key, as WebDataset does);
    usable samples are returned, the others appended to ``problems``."""
    groups: list[tuple[str, list[_Member]]] = []
    for member in members:
        key = member.key
        if key is None:
            continue  # not KEY.EXT: WebDataset ignores such members too
        if groups and groups[-1][0] == key:
            groups[-1][1].append(member)
        else:
            groups.append((key, [member]))
    samples: list[SampleEntry] = []
    seen: set[str] = set()
    for key, group in groups:
        spans = {base_plus_ext(m.name)[1].lower(): m.span for m in group}
        bad = _sample_problem(key, group, list(spans), seen)
        seen.add(key)
        if bad is None:
            image_extension = next(e for e in IMAGE_EXTENSIONS if e in spans)
            try:
                if check is not None:
                    check(spans, image_extension)
            except SampleDecodeError as err:
                bad = str(err)
            else:
                samples.append(
                    SampleEntry(
                        key,
                        image_extension,
                        spans[image_extension],
                        spans[CAPTION_EXTENSION],
                        spans.get(META_EXTENSION),
                    )
                )
        if bad is not None:
            problems.append(Problem(key, bad))
    return samples


def _sample_problem(key: str, group: list[_Member], extensions: list[str], seen: set[str]) -> str | None:
    present = ", ".join(f".{base_plus_ext(m.name)[1]}" for m in group)
    damage = next((m.damage for m in group if m.damage), None)
    if damage is not None:
        return damage
    if key in seen:
        return "the key appears again further on in the shard (keys must be unique)"
    if len(extensions) != len(group):
        return f"the sample has a field twice ({present})"
    if not any(e in IMAGE_EXTENSIONS for e in extensions):
        return f"the sample has no image field (one of {', '.join('.' + e for e in IMAGE_EXTENSIONS)}); it has {present}"
    if CAPTION_EXTENSION not in extensions:
        return f"the sample has no caption field (.txt); it has {present}"
    return None


def load_index(path: Path, sha256: str) -> ShardIndex | None:
    """A cached index for content ``sha256``, or None when there is none (or it is unreadable)."""
    try:
        index = ShardIndex.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return index if index.sha256 == sha256 else None


def save_index(path: Path, index: ShardIndex) -> None:
    """Cache an index; a read-only dataset directory just means indexing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(index)}")
        tmp.write_text(index.to_json())
        tmp.replace(path)
    except OSError:
        pass
