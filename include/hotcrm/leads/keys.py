"""The email hashes of a lead file's rows: which rows repeat an earlier row's email."""

from __future__ import annotations

import numpy as np

KEY_MASK = 0xFFFFFFFFFFFFF  # email hashes, as keys of EmailKeys


class EmailKeys:
    """The email hashes of the rows sent so far, each with the line it came from: which new
    ones repeat an earlier row's?

    Sorted arrays (16 bytes a row), new hashes inserted in batches: those of a column-wise
    batch, and those of rows that come one at a time, gathered first (a per-row look-up cost a
    numpy call, and a GIL hand-over to the loader's thread, per row). Equal hashes of different
    emails count as a repeat: the merge then finds the truth. The line noted with a hash is its
    first row's (loaded directly in a direct load).
    """

    def __init__(self) -> None:
        self.sorted = np.empty(0, dtype=np.int64)
        self.lines = np.empty(0, dtype=np.int64)
        self.distinct = True

    def repeats(self, keys: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Note a batch of hashes and their rows' lines; True for each hash seen before (in an
        earlier batch, or earlier in this one)."""
        unique, first = np.unique(keys, return_index=True)  # (the first occurrence of each)
        repeat = np.ones(len(keys), dtype=bool)
        repeat[first] = False
        position = np.searchsorted(self.sorted, unique)
        if len(self.sorted):
            seen = self.sorted[np.minimum(position, len(self.sorted) - 1)] == unique
            repeat[first[seen]] = True
            unique, first, position = unique[~seen], first[~seen], position[~seen]
        # (np.insert puts each new hash before the position found: one copy, the arrays stay sorted.)
        self.sorted = np.insert(self.sorted, position, unique)
        self.lines = np.insert(self.lines, position, lines[first])
        self.distinct &= not repeat.any()
        return repeat

    def line_of(self, keys: np.ndarray) -> np.ndarray:
        """The line noted with each hash (each one noted before)."""
        return self.lines[np.searchsorted(self.sorted, keys)]
