"""Reading a whole batch of Avro records at once: the batch is one byte array and each field's
position is one int64 column over all records, so a varint or a string is read for every record
together (numpy) instead of record by record (Python).

A record that stops parsing is marked in `ok` and read on as if nothing happened: its positions
are clipped into the zero padding after the batch, so reads never fail, and the caller drops
every record that is not `ok` at the end.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_VARINT_BYTES = 10
UTF8_WINDOW = 64         # strings up to this long are checked for non-ASCII bytes in one numpy step


class Cursor:
    """One read position per record over the batch's bytes, and whether each record still parses."""

    def __init__(self, buf: np.ndarray, starts: np.ndarray, limit: int):
        self.buf = buf
        self.p = starts.copy()
        self.ok = np.ones(len(starts), dtype=bool)
        self.limit = limit            # positions are clipped here: past every record, inside the padding

    def move(self, to: np.ndarray) -> None:
        self.p = np.minimum(to, self.limit)

    def long(self) -> np.ndarray:
        """Read one zigzag varint per record."""
        q = self.p
        byte = self.buf[q].astype(np.uint64)
        raw = byte & np.uint64(0x7F)
        more = byte >= 0x80
        q = q + 1
        shift = 7
        while more.any():
            if shift >= 7 * MAX_VARINT_BYTES:
                self.ok &= ~more
                break
            idx = np.flatnonzero(more)
            byte = self.buf[q[idx]].astype(np.uint64)
            raw[idx] |= (byte & np.uint64(0x7F)) << np.uint64(shift)
            q[idx] += 1
            more[idx] = byte >= 0x80
            shift += 7
        self.move(q)
        return (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)

    def length(self) -> np.ndarray:
        """A string or bytes length: one that is negative or runs past the batch refuses the
        record (and reads as 0, so no position can overflow)."""
        n = self.long()
        bad = (n < 0) | (n > self.limit)
        self.ok &= ~bad
        return np.where(bad, 0, n)

    def span(self) -> tuple[np.ndarray, np.ndarray]:
        """A string or bytes: (start, end) of its content."""
        n = self.length()
        start = self.p
        self.move(start + n)
        return start, start + n

    def gather(self, at: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return self.buf[np.minimum(at, self.limit)[:, None] + columns]

    def windows(self, at: np.ndarray, width: int) -> np.ndarray:
        """(records, width) bytes starting at `at`: one row copy each, not a byte-by-byte gather
        (unless the window is wider than the padding; bytes past the buffer read as zeros)."""
        at = np.minimum(at, self.limit)
        if width <= len(self.buf) - self.limit:
            return sliding_window_view(self.buf, width)[at]
        return self.buf[np.minimum(at[:, None] + np.arange(width), len(self.buf) - 1)]

    def doubles(self, at: np.ndarray) -> np.ndarray:
        """The little-endian double at `at` of each record."""
        return np.ascontiguousarray(self.windows(at, 8)).view("<f8")[:, 0]

    def check_utf8(self, span: tuple[np.ndarray, np.ndarray]) -> None:
        """Refuse records whose string at `span` is not UTF-8. ASCII (the usual case) is seen in
        one vectorised look at the strings' bytes (up to UTF8_WINDOW of them); the rest are
        decoded one by one."""
        start, end = span
        n = end - start
        checked = self.ok & (n > 0)
        if not checked.any():
            return
        width = min(UTF8_WINDOW, int(n[checked].max()))
        window = self.windows(start, width)
        high = ((window >= 0x80) & (np.arange(width) < n[:, None])).any(axis=1) | (n > width)
        for i in np.flatnonzero(high & checked).tolist():
            try:
                self.buf[start[i]:end[i]].tobytes().decode()
            except UnicodeDecodeError:
                self.ok[i] = False

    def sub(self, rows: np.ndarray) -> "Cursor":
        """A cursor over records `rows` only (for fields some records have and others not)."""
        out = Cursor(self.buf, self.p[rows], self.limit)
        out.ok = self.ok[rows]
        return out

    def put(self, rows: np.ndarray, sub: "Cursor") -> None:
        """Take back what `sub` (from `self.sub(rows)`) has read."""
        self.p[rows] = sub.p
        self.ok[rows] = sub.ok


class Batch:
    """A batch of encoded records joined into one buffer, with a cursor at each record's start."""

    def __init__(self, values: list[bytes], pad: int):
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.joined = b"".join(values)
        # The padding holds every clipped read: widest window read plus a varint.
        buf = np.frombuffer(self.joined + bytes(pad + 2 * MAX_VARINT_BYTES + 8), dtype=np.uint8)
        self.cursor = Cursor(buf, self.starts, len(self.joined) + 1)

    def check_header(self, header: bytes) -> np.ndarray:
        """Refuse records that do not start with `header`; the positions after it."""
        cur = self.cursor
        expected = np.frombuffer(header, dtype=np.uint8)
        cur.ok &= (cur.gather(self.starts, np.arange(len(header))) == expected).all(axis=1)
        after = self.starts + len(header)
        cur.move(after)
        return after
