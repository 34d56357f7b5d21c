"""Avro binary primitives one value at a time: zigzag varints, strings, and the maps Flywheel's
records carry. Readers raise IndexError where the bytes are not what they should be (and
UnicodeDecodeError for a string that is not UTF-8), so a caller can refuse the record and leave
it to fastavro, which names the reason. Writers give fastavro's layout (a map or array in one
block, a union<null, T> as branch 0 or 1) and raise TypeError, struct.error, AttributeError or
UnicodeEncodeError on a value of another type, so a caller can leave that record to fastavro."""
import struct

DOUBLE = struct.Struct("<d")
NULL, SOME = b"\x00", b"\x02"       # union<null, T>: branch 0, branch 1
_LENGTHS = [bytes((n << 1,)) for n in range(64)]     # the zigzag varint of each short length


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = []                  # a list, then bytes(): a fifth quicker than a bytearray
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_LENGTHS[n] if n < 64 else zigzag(n)) + b


def optional_string(s: str | None) -> bytes:
    return NULL if s is None else SOME + string(s)


def optional_double(v: float | None) -> bytes:
    return NULL if v is None else SOME + DOUBLE.pack(v)


def numeric_map(values: dict) -> bytes:
    """map<union<null,double>>."""
    if not values:
        return b"\x00"
    parts = [zigzag(len(values))]
    for k, v in values.items():
        parts.append(string(k) + (NULL if v is None else SOME + DOUBLE.pack(v)))
    parts.append(b"\x00")
    return b"".join(parts)


def categorical_map(values: dict) -> bytes:
    """map<union<null,string>>."""
    if not values:
        return b"\x00"
    parts = [zigzag(len(values))]
    for k, v in values.items():
        parts.append(string(k) + (NULL if v is None else SOME + string(v)))
    parts.append(b"\x00")
    return b"".join(parts)


def double_map(values: dict) -> bytes:
    """map<double>."""
    if not values:
        return b"\x00"
    return zigzag(len(values)) + b"".join(string(k) + DOUBLE.pack(v) for k, v in values.items()) + b"\x00"


def string_map(values: dict) -> bytes:
    """map<string>."""
    if not values:
        return b"\x00"
    return zigzag(len(values)) + b"".join(string(k) + string(v) for k, v in values.items()) + b"\x00"


def string_array(items: list) -> bytes:
    """array<string>."""
    if not items:
        return b"\x00"
    return zigzag(len(items)) + b"".join(string(f) for f in items) + b"\x00"


def read_long(b: bytes, p: int) -> tuple[int, int]:
    byte = b[p]
    p += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        byte = b[p]
        p += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), p


def read_length(b: bytes, p: int) -> tuple[int, int]:
    """A string/bytes length: a long that must not be negative (IndexError marks it unparseable)."""
    n, p = read_long(b, p)
    if n < 0:
        raise IndexError("negative length")
    return n, p


def read_map(raw: bytes, strings: bool) -> dict:
    """Decode an encoded map<union<null,double>> (or <union<null,string>> with strings=True)."""
    return read_map_at(raw, 0, strings)[0]


def read_map_at(b: bytes, p: int, strings: bool) -> tuple[dict, int]:
    """The map starting at `p` and the position after it (IndexError if it is not one)."""
    out = {}
    count, p = read_long(b, p)
    while count:
        if count < 0:
            count = -count
            _, p = read_long(b, p)
        for _ in range(count):
            n, p = read_length(b, p)
            key = b[p:p + n].decode()
            p += n
            branch, p = read_long(b, p)
            if branch == 0:
                out[key] = None
            elif branch != 1:
                raise IndexError(f"union branch {branch}")
            elif strings:
                n, p = read_length(b, p)
                out[key] = b[p:p + n].decode()
                p += n
            else:
                out[key] = DOUBLE.unpack_from(b, p)[0]
                p += 8
        count, p = read_long(b, p)
    return out, p


def skip_string_map(b: bytes, p: int) -> int:
    """The position after the map<string> starting at `p`, its strings checked as UTF-8 though
    unused (IndexError if it is not a map, UnicodeDecodeError as fastavro would)."""
    count, p = read_long(b, p)
    while count:
        if count < 0:
            count = -count
            _, p = read_long(b, p)
        for _ in range(2 * count):
            n, p = read_length(b, p)
            b[p:p + n].decode()
            p += n
        count, p = read_long(b, p)
    if p > len(b):
        raise IndexError("map runs past the record")
    return p
