"""Additive binned counts: the raw material of every drift statistic.

A drift statistic compares the distribution of what a device sees now with the reference
distribution recorded when the model was converted. The reference profile fixes the bins (inner
cut points for numbers, a label list for categories); the device only *counts* into them. Counts
against fixed bins are additive: the histogram of a concatenation is the sum of the histograms,
so windows, devices and whole fleets aggregate without ever moving raw data.

Bin convention (the same as the converter's): value ``v`` falls into bin
``np.searchsorted(edges, v, side="right")``; ``k`` inner edges make ``k + 1`` bins, the first
open to the left, the last open to the right. A constant feature has no edges and one bin.

Every histogram also has an ``other`` bucket for what the reference has no bin for: NaN for a
numeric histogram, an unknown category for a categorical one. The reference proportion of
``other`` is zero, so anything landing there counts as drift once the PSI is taken.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewise_monitoring.errors import IncompatibleAggregates
from edgewise_monitoring.labels import Label, canonical_label

# FeatureCounts compares every value with every edge of its feature at once; rows are processed
# in chunks so that the temporary (rows x features x edges) boolean array stays below this size.
_MAX_COMPARISONS = 1 << 22


def _as_edges(edges: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(edges, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError("bin edges must not be NaN")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError("bin edges must be in ascending order")
    return arr


class BinnedCounts:
    """Integer counts of values against fixed numeric edges or a fixed list of category labels.

    Build one with :meth:`numeric` or :meth:`categorical`. ``counts[i]`` is the number of values
    in bin ``i``; ``other`` counts NaN (numeric) or labels outside the list (categorical).
    """

    __slots__ = ("_edge_list", "_edges", "_index", "_keys", "_labels", "_order", "counts", "other")

    def __init__(
        self,
        *,
        edges: npt.ArrayLike | None = None,
        labels: Sequence[Any] | None = None,
    ) -> None:
        if (edges is None) == (labels is None):
            raise ValueError("give exactly one of edges (numeric) or labels (categorical)")
        self._edges: npt.NDArray[np.float64] | None = None
        self._labels: tuple[Label, ...] | None = None
        self._index: dict[Label, int] = {}
        # Sorted label keys for the vectorised lookup, and the bin of each sorted key.
        self._keys: np.ndarray | None = None
        self._order: npt.NDArray[np.intp] | None = None
        self._edge_list: list[float] | None = None
        if edges is not None:
            self._edges = _as_edges(edges)
            self._edge_list = self._edges.tolist()
            n_bins = self._edges.size + 1
        else:
            assert labels is not None
            canon = tuple(canonical_label(x) for x in labels)
            if len(set(canon)) != len(canon):
                raise ValueError(f"category labels must be distinct: {list(canon)}")
            self._labels = canon
            self._index = {lab: i for i, lab in enumerate(canon)}
            self._prepare_lookup(canon)
            n_bins = len(canon)
        self.counts: npt.NDArray[np.int64] = np.zeros(n_bins, dtype=np.int64)
        self.other: int = 0

    @classmethod
    def numeric(cls, edges: npt.ArrayLike) -> BinnedCounts:
        """Counts against inner cut points ``edges`` (``len(edges) + 1`` bins)."""
        return cls(edges=edges)

    @classmethod
    def categorical(cls, labels: Sequence[Any]) -> BinnedCounts:
        """Counts per label, in the order given (the order of the reference proportions)."""
        return cls(labels=labels)

    def _prepare_lookup(self, labels: tuple[Label, ...]) -> None:
        """Precompute sorted keys so that :meth:`add` maps a whole array with one searchsorted.

        Only when the labels are all numbers or all strings; a mixed list uses the dict path.
        """
        if not labels:
            return
        if all(isinstance(x, str) for x in labels):
            keys: np.ndarray = np.array(labels, dtype=np.str_)
        elif not any(isinstance(x, str) for x in labels):
            keys = np.array(labels, dtype=np.float64)
        else:
            return
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._order = order.astype(np.intp)

    # -- description ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"numeric"`` or ``"categorical"``."""
        return "numeric" if self._edges is not None else "categorical"

    @property
    def edges(self) -> tuple[float, ...] | None:
        return tuple(float(x) for x in self._edges) if self._edges is not None else None

    @property
    def labels(self) -> tuple[Label, ...] | None:
        return self._labels

    @property
    def n_bins(self) -> int:
        """Number of reference bins (``other`` not included)."""
        return int(self.counts.size)

    @property
    def total(self) -> int:
        """Every value counted, ``other`` included."""
        return int(self.counts.sum()) + self.other

    def with_other(self) -> npt.NDArray[np.int64]:
        """The counts followed by ``other``: the observed vector a PSI against the reference uses."""
        return np.append(self.counts, np.int64(self.other))

    def same_bins(self, other: BinnedCounts) -> bool:
        if self._labels is not None or other._labels is not None:
            return self._labels == other._labels
        assert self._edges is not None and other._edges is not None
        return bool(np.array_equal(self._edges, other._edges))

    # -- accumulation --------------------------------------------------------------------------

    def bin_of(self, values: npt.ArrayLike | Sequence[Any]) -> npt.NDArray[np.intp]:
        """The bin index of every value; ``n_bins`` stands for ``other``."""
        if self._edges is not None:
            x = np.asarray(values, dtype=np.float64).reshape(-1)
            bins = np.searchsorted(self._edges, x, side="right")
            nan = np.isnan(x)
            if nan.any():
                bins[nan] = self.n_bins
            return bins
        return self._label_bins(np.asarray(values).reshape(-1))

    def _bin_of_one(self, value: Any) -> int:
        if self._edge_list is not None:
            x = math.nan if value is None else float(value)  # as np.asarray(None, float)
            return self.n_bins if math.isnan(x) else bisect.bisect_right(self._edge_list, x)
        try:
            return self._index.get(canonical_label(value), self.n_bins)
        except (TypeError, ValueError):
            return self.n_bins

    def _label_bins(self, v: np.ndarray) -> npt.NDArray[np.intp]:
        n = self.n_bins
        keys, order = self._keys, self._order
        if keys is not None and order is not None:
            numeric_keys = keys.dtype.kind == "f"
            if (numeric_keys and v.dtype.kind in "biuf") or (not numeric_keys and v.dtype.kind == "U"):
                x = v.astype(np.float64) if numeric_keys else v
                pos = np.minimum(np.searchsorted(keys, x), n - 1)
                hit = keys[pos] == x
                return np.where(hit, order[pos], n).astype(np.intp)
        # Mixed label types, object arrays (e.g. ONNX string outputs), bytes: map each value
        # through the dict, canonicalising each distinct value once.
        out = np.empty(v.size, dtype=np.intp)
        seen: dict[Any, int] = {}
        for i, raw in enumerate(v.tolist()):
            b = seen.get(raw)
            if b is None:
                try:
                    b = self._index.get(canonical_label(raw), n)
                except (TypeError, ValueError):
                    b = n  # NaN, None, unhashable oddities: not a known label
                seen[raw] = b
            out[i] = b
        return out

    def add(self, values: npt.ArrayLike | Sequence[Any]) -> None:
        """Count every value of ``values`` (any shape; flattened). Vectorised over the array.

        A single value takes a pure-Python path (``bisect`` or a dict lookup) that gives the
        same bin several times faster than the numpy calls, which matters for one-row
        predictions.
        """
        arr = np.asarray(values)
        if arr.size == 1:
            b = self._bin_of_one(arr.reshape(-1).tolist()[0])
            if b == self.n_bins:
                self.other += 1
            else:
                self.counts[b] += 1
            return
        bins = self.bin_of(arr)
        if bins.size == 0:
            return
        c = np.bincount(bins, minlength=self.n_bins + 1)
        self.counts += c[: self.n_bins]
        self.other += int(c[self.n_bins])

    def merge(self, other: BinnedCounts) -> None:
        """Add ``other``'s counts into this histogram (in place). The bins must be identical."""
        if not self.same_bins(other):
            raise IncompatibleAggregates("cannot add histograms with different bins")
        self.counts += other.counts
        self.other += other.other

    def copy(self) -> BinnedCounts:
        out = BinnedCounts.__new__(BinnedCounts)
        for name in self.__slots__:
            setattr(out, name, getattr(self, name))
        out.counts = self.counts.copy()
        return out

    # -- JSON ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"edges": [...]}`` or ``{"labels": [...]}``, plus ``"counts"`` and ``"other"``."""
        d: dict[str, Any]
        if self._edges is not None:
            d = {"edges": [float(x) for x in self._edges]}
        else:
            d = {"labels": list(self._labels or ())}
        d["counts"] = [int(x) for x in self.counts]
        d["other"] = int(self.other)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinnedCounts:
        if "edges" in d:
            out = cls.numeric(d["edges"])
        elif "labels" in d:
            out = cls.categorical(d["labels"])
        else:
            raise ValueError("a histogram needs 'edges' or 'labels'")
        out.load_counts(d["counts"], d.get("other", 0))
        return out

    def load_counts(self, counts: npt.ArrayLike, other: int = 0) -> None:
        """Replace the counts (used when reading a summary that does not repeat the bins)."""
        arr = np.asarray(counts, dtype=np.int64).reshape(-1)
        if arr.size != self.n_bins:
            raise ValueError(f"expected {self.n_bins} counts, got {arr.size}")
        if (arr < 0).any() or int(other) < 0:
            raise ValueError("counts must be non-negative")
        self.counts = arr.copy()
        self.other = int(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinnedCounts):
            return NotImplemented
        return (
            self.same_bins(other)
            and bool(np.array_equal(self.counts, other.counts))
            and self.other == other.other
        )

    def __repr__(self) -> str:
        bins = f"edges={self.edges}" if self._edges is not None else f"labels={self._labels}"
        return f"BinnedCounts({bins}, counts={self.counts.tolist()}, other={self.other})"


class FeatureCounts:
    """Binned counts of every input feature, updated for a whole batch in one vectorised pass.

    Looping over features with ``np.searchsorted`` costs a few microseconds of Python overhead per
    feature per call, which dominates for single-row predictions. Instead, every feature's edges
    are padded with ``+inf`` into one (features x max_edges) matrix, and the bin of each value is
    the number of edges it is ``>=`` (exactly ``searchsorted(..., side="right")``). One bincount
    over ``feature_offset + bin`` then updates every histogram at once, so the cost of a call is
    a handful of numpy operations whatever the number of features.
    """

    __slots__ = ("_edge_matrix", "_n_bins", "_offsets", "_sum_dtype", "counts", "edges")

    def __init__(self, edges: Sequence[npt.ArrayLike]) -> None:
        self.edges: tuple[npt.NDArray[np.float64], ...] = tuple(_as_edges(e) for e in edges)
        n_features = len(self.edges)
        self._n_bins = np.array([e.size + 1 for e in self.edges], dtype=np.int64)
        slots = self._n_bins + 1  # one extra slot per feature for "other" (NaN)
        self._offsets = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
        width = max((e.size for e in self.edges), default=0)
        self._edge_matrix = np.full((n_features, width), np.inf)
        for j, e in enumerate(self.edges):
            self._edge_matrix[j, : e.size] = e
        self._sum_dtype = np.uint8 if width < 256 else np.int64
        self.counts: npt.NDArray[np.int64] = np.zeros(int(slots.sum()), dtype=np.int64)

    @property
    def n_features(self) -> int:
        return len(self.edges)

    @property
    def rows(self) -> int:
        """Rows counted so far (every row adds one value to each feature)."""
        if not self.edges:
            return 0
        return int(self.counts[: int(self._n_bins[0]) + 1].sum())

    def add(self, features: npt.ArrayLike) -> None:
        """Count a batch: ``features`` is (rows x n_features), or one row as a 1-D array."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"expected rows of {self.n_features} features, got an array of shape {x.shape}"
            )
        if x.shape[0] == 0 or self.n_features == 0:
            return
        step = max(1, _MAX_COMPARISONS // max(1, x.shape[1] * self._edge_matrix.shape[1]))
        for start in range(0, x.shape[0], step):
            self._add_chunk(x[start : start + step])

    def _add_chunk(self, chunk: npt.NDArray[np.float64]) -> None:
        above = chunk[:, :, None] >= self._edge_matrix[None, :, :]
        # Summing the booleans as bytes into a narrow type is ~1.5x faster than into int64.
        bins = above.view(np.uint8).sum(axis=2, dtype=self._sum_dtype).astype(np.intp)
        finite = np.isfinite(chunk)
        if not finite.all():
            # +inf is >= the +inf padding too: clamp it into the top bin (where searchsorted
            # puts it); NaN goes to the feature's "other" slot.
            np.minimum(bins, self._n_bins - 1, out=bins)
            nan = np.isnan(chunk)
            bins[nan] = np.broadcast_to(self._n_bins, bins.shape)[nan]
        bins += self._offsets
        if chunk.shape[0] == 1:
            # One row: every feature's slot is distinct, so a fancy-indexed increment is exact
            # and much cheaper than a bincount over all slots.
            self.counts[bins[0]] += 1
        else:
            self.counts += np.bincount(bins.ravel(), minlength=self.counts.size)

    def column(self, j: int) -> BinnedCounts:
        """Feature ``j``'s counts as a standalone :class:`BinnedCounts`."""
        out = BinnedCounts.numeric(self.edges[j])
        lo = int(self._offsets[j])
        nb = int(self._n_bins[j])
        out.load_counts(self.counts[lo : lo + nb], int(self.counts[lo + nb]))
        return out

    def columns(self) -> list[BinnedCounts]:
        return [self.column(j) for j in range(self.n_features)]

    def merge(self, other: FeatureCounts) -> None:
        """Add ``other``'s counts (in place); every feature's edges must be identical."""
        if len(self.edges) != len(other.edges) or not all(
            np.array_equal(a, b) for a, b in zip(self.edges, other.edges, strict=True)
        ):
            raise IncompatibleAggregates("cannot add feature histograms with different edges")
        self.counts += other.counts

    def reset(self) -> None:
        self.counts[:] = 0
