"""Avro binary primitives one value at a time: zigzag varints, strings, and the maps Flywheel's
records carry. Readers raise IndexError where the bytes are not what they should be (and
UnicodeDecodeError for a string that is not UTF-8), so a caller can refuse the record and leave
it to fastavro, which names the reason."""
import struct

DOUBLE = struct.Struct("<d")


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string(s: str) -> bytes:
    b = s.encode()
    return zigzag(len(b)) + b


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
