"""One partition's messages from one fetch as two lists, offsets and values (see streams/fetch.py).

Apart from ``streams.fetch`` so that the pipeline, which replay runs without a broker, needs no aiokafka.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence, overload


class RawRecord(NamedTuple):
    """One message of a ``FetchedRun``: its offset and value (None for a tombstone)."""

    offset: int
    value: bytes | None


class FetchedRun(Sequence[RawRecord]):
    """One partition's consecutive messages from one fetch, offsets ascending, kept as two lists.

    Indexing makes a ``RawRecord``; slicing makes another run. The pipeline's compiled decoder
    reads ``values`` directly.
    """

    __slots__ = ("offsets", "values")

    def __init__(self, offsets: list[int], values: list[bytes | None]) -> None:
        if len(offsets) != len(values):
            raise ValueError(f"{len(offsets)} offsets for {len(values)} values")
        self.offsets = offsets
        self.values = values

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> RawRecord: ...

    @overload
    def __getitem__(self, index: slice) -> "FetchedRun": ...

    def __getitem__(self, index: int | slice) -> "RawRecord | FetchedRun":
        if isinstance(index, slice):
            return FetchedRun(self.offsets[index], self.values[index])
        return RawRecord(self.offsets[index], self.values[index])

    def __iter__(self) -> Iterator[RawRecord]:
        return map(RawRecord, self.offsets, self.values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FetchedRun):
            return self.offsets == other.offsets and self.values == other.values
        return NotImplemented

    def __repr__(self) -> str:
        span = f"offsets {self.offsets[0]}..{self.offsets[-1]}" if self.offsets else "empty"
        return f"FetchedRun({len(self)} messages, {span})"
