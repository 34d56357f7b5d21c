"""Strings of a batch as codes into their distinct values (a factor), read straight off the
bytes: a model name, a label or a category takes a handful of values over thousands of records,
so comparing each record's bytes with one example of each value, in numpy, replaces decoding
one Python string per record."""
from dataclasses import dataclass

import numpy as np
from flywheel.schemas.wire.cursor import Cursor

PACKED_BYTES = 56        # longer strings are told apart one by one in Python
PACKED_VALUES = 16       # values told apart in numpy; any further ones one by one in Python


@dataclass
class Factor:
    codes: np.ndarray                 # per record: index into `values`
    values: list[str | None]          # distinct; None: the value was null (or the field absent)

    def take(self, rows: np.ndarray) -> "Factor":
        return Factor(self.codes[rows], self.values)

    def strings(self) -> list[str | None]:
        """Each record's value."""
        values = self.values
        return [values[c] for c in self.codes.tolist()]

    def counts(self) -> dict[str | None, int]:
        """How many records hold each value (values held by none left out)."""
        counts = np.bincount(self.codes, minlength=len(self.values)).tolist()
        return {value: n for value, n in zip(self.values, counts) if n}


def factor(cur: Cursor, start: np.ndarray, end: np.ndarray, present: np.ndarray | None = None) -> Factor:
    """The UTF-8 strings at [start, end) of each record as a Factor (None where not `present`).
    The bytes must be valid UTF-8 already (`Cursor.check_utf8`)."""
    n = len(start)
    codes = np.full(n, -1, dtype=np.int64)
    values: list[str | None] = []
    left = np.arange(n)
    if present is not None and not present.all():
        codes[~present] = 0
        values.append(None)
        left = left[present]
    lengths = end - start
    if left.size and lengths[left].max() <= PACKED_BYTES:
        left = _packed(cur, start, lengths, left, codes, values)
    joined = {}
    for i in left.tolist():
        raw = cur.buf[start[i]:end[i]].tobytes()
        if raw not in joined:
            joined[raw] = len(values)
            values.append(raw.decode())
        codes[i] = joined[raw]
    return Factor(codes, values)


def _packed(cur: Cursor, start: np.ndarray, lengths: np.ndarray, left: np.ndarray, codes: np.ndarray,
            values: list) -> np.ndarray:
    """Code the records `left` whose string is one of the first PACKED_VALUES distinct ones; the
    rest, still to code, are returned. Each string is packed into 64-bit words with its length
    in the last byte, so equal words mean equal strings."""
    width = (int(lengths[left].max()) + 1 + 7) // 8 * 8
    raw = np.where(np.arange(width) < lengths[left, None], cur.windows(start[left], width), 0).astype(np.uint8)
    raw[:, -1] = lengths[left]
    words = raw.view("<u8")
    todo = np.arange(len(left))
    while todo.size and len(values) < PACKED_VALUES:
        first = todo[0]
        same = (words[todo] == words[first]).all(axis=1)
        codes[left[todo[same]]] = len(values)
        i = left[first]
        values.append(cur.buf[start[i]:start[i] + lengths[i]].tobytes().decode())
        todo = todo[~same]
    return left[todo]
