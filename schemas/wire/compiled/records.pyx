# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The joiner's per-record Avro work in C: Predictions and GroundTruths read from their bytes
straight into the dicts fastavro would give, FeedbackRecords written to fastavro's bytes.

A record is read only when it is certainly what fastavro would read the same way: this schema's
id in its header, varints of at most 64 bits, enum and union indexes in range, UTF-8 strings, an
int within 32 bits, and its last field ending where the record does. Anything else raises
`Refused` and the caller hands the record to fastavro, which decodes it or names the dead-letter
reason, so refusals are fastavro's on either path. A value the writer is not sure of (not
exactly a str, int, float, None, dict or list of the schema's types) raises too, and fastavro
writes it or says why not. The Python modules beside this folder are the reference; tests hold
this one to them.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

from flywheel.errors import FlywheelError

ROLES = ("LIVE", "CANARY", "SHADOW")
cdef int64_t INT32_MIN = -2 ** 31, INT32_MAX = 2 ** 31 - 1


class Refused(FlywheelError):
    """Not sure to read or write this record as fastavro does: fastavro's to do."""


# -- reading ------------------------------------------------------------------------------------

cdef struct Reader:
    const unsigned char* b
    Py_ssize_t p
    Py_ssize_t n


cdef int64_t read_long(Reader* r) except? -1:
    cdef uint64_t raw = 0, byte
    cdef int shift = 0
    while True:
        if r.p >= r.n:
            raise Refused("ends early")
        byte = r.b[r.p]
        r.p += 1
        if shift == 63:              # the tenth byte: one bit left of 64
            if byte > 1:
                raise Refused("varint beyond 64 bits")
            raw |= byte << 63
            break
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return <int64_t>((raw >> 1) ^ (0 - (raw & 1)))


cdef Py_ssize_t read_index(Reader* r, Py_ssize_t size) except -1:
    """An enum symbol's or a union branch's index, in [0, size)."""
    cdef int64_t i = read_long(r)
    if i < 0 or i >= size:
        raise Refused("index out of range")
    return <Py_ssize_t>i


cdef Py_ssize_t read_count(Reader* r) except -1:
    """A map or array block's count (its byte size skipped when given, as fastavro does)."""
    cdef int64_t count = read_long(r)
    if count < 0:
        if count < -r.n:
            raise Refused("block count")
        count = -count
        read_long(r)
    if count > r.n - r.p:            # every entry takes at least a byte
        raise Refused("block count")
    return <Py_ssize_t>count


cdef str read_string(Reader* r):
    cdef int64_t n = read_long(r)
    if n < 0 or n > r.n - r.p:
        raise Refused("string length")
    s = PyUnicode_DecodeUTF8(<const char*>r.b + r.p, <Py_ssize_t>n, NULL)    # strict, as fastavro
    r.p += <Py_ssize_t>n
    return s


cdef double read_double(Reader* r) except? -1:
    cdef uint64_t bits = 0
    cdef double d
    cdef int i
    if r.n - r.p < 8:
        raise Refused("ends early")
    for i in range(8):               # little-endian whatever the machine
        bits |= (<uint64_t>r.b[r.p + i]) << (8 * i)
    memcpy(&d, &bits, 8)
    r.p += 8
    return d


cdef object read_optional_string(Reader* r):
    return read_string(r) if read_index(r, 2) else None


cdef object read_optional_double(Reader* r):
    return read_double(r) if read_index(r, 2) else None


cdef dict read_double_map(Reader* r, bint optional):
    """map<double>, or map<union<null, double>> (`optional`)."""
    cdef dict out = {}
    cdef Py_ssize_t count = read_count(r), i
    while count:
        for i in range(count):
            key = read_string(r)
            out[key] = read_optional_double(r) if optional else read_double(r)
        count = read_count(r)
    return out


cdef dict read_string_map(Reader* r, bint optional):
    """map<string>, or map<union<null, string>> (`optional`)."""
    cdef dict out = {}
    cdef Py_ssize_t count = read_count(r), i
    while count:
        for i in range(count):
            key = read_string(r)
            out[key] = read_optional_string(r) if optional else read_string(r)
        count = read_count(r)
    return out


cdef list read_string_array(Reader* r):
    cdef list out = []
    cdef Py_ssize_t count = read_count(r), i
    while count:
        for i in range(count):
            out.append(read_string(r))
        count = read_count(r)
    return out


cdef Reader reader_after(bytes value, bytes header) except *:
    """A reader past the header, which must be this schema's."""
    cdef Reader r
    cdef Py_ssize_t h = PyBytes_GET_SIZE(header)
    r.b = <const unsigned char*>PyBytes_AS_STRING(value)
    r.n = PyBytes_GET_SIZE(value)
    if r.n < h or memcmp(r.b, PyBytes_AS_STRING(header), h) != 0:
        raise Refused("not this schema's header")
    r.p = h
    return r


cdef void at_end(Reader* r) except *:
    """The last field must end where the record does."""
    if r.p != r.n:
        raise Refused("trailing bytes")


cdef dict read_prediction(bytes value, bytes header):
    """A Prediction as the columnar reader gives it: fastavro's fields less inference_us and batch_size."""
    cdef Reader r = reader_after(value, header)
    cdef dict out = {}
    # one statement a field: fields are read in the schema's order
    out["request_id"] = read_string(&r)
    out["entity_id"] = read_string(&r)
    out["model"] = read_string(&r)
    out["model_version"] = read_string(&r)
    out["role"] = ROLES[read_index(&r, 3)]
    out["event_time"] = read_long(&r)
    out["predicted_at"] = read_long(&r)
    out["label"] = read_optional_string(&r)
    out["value"] = read_optional_double(&r)
    out["scores"] = read_double_map(&r, False)
    out["confidence"] = read_optional_double(&r)
    out["flags"] = read_string_array(&r)
    out["numeric"] = read_double_map(&r, True)
    out["categorical"] = read_string_map(&r, True)
    out["feature_sources"] = read_string_map(&r, False)
    read_long(&r)                                                         # inference_us
    cdef int64_t batch_size = read_long(&r)
    if not INT32_MIN <= batch_size <= INT32_MAX:
        raise Refused("int beyond 32 bits")
    at_end(&r)
    return out


cdef dict read_ground_truth(bytes value, bytes header):
    cdef Reader r = reader_after(value, header)
    cdef dict out = {}
    out["request_id"] = read_string(&r)
    out["model"] = read_optional_string(&r)
    out["label"] = read_optional_string(&r)
    out["value"] = read_optional_double(&r)
    out["labelled_at"] = read_long(&r)
    out["source"] = read_string(&r)
    out["reviewer"] = read_optional_string(&r)
    out["note"] = read_optional_string(&r)
    at_end(&r)
    return out


def decode_predictions(list values, bytes header):
    """(the records read: (batch position, dict), batch positions left to fastavro)."""
    return _decode_all(values, header, read_prediction)


def decode_ground_truths(list values, bytes header):
    return _decode_all(values, header, read_ground_truth)


cdef tuple _decode_all(list values, bytes header, dict (*read)(bytes, bytes)):
    cdef list done = [], rest = []
    cdef Py_ssize_t i
    for i in range(len(values)):
        value = values[i]
        if type(value) is not bytes:
            rest.append(i)
            continue
        try:
            done.append((i, read(value, header)))
        except (Refused, UnicodeDecodeError):
            rest.append(i)
    return done, rest


# -- writing ------------------------------------------------------------------------------------

cdef class FeedbackWriter:
    """Writes FeedbackRecords (their fields as a dict) into one buffer it keeps between records."""
    cdef char* buf
    cdef Py_ssize_t n, cap
    cdef bytes header

    def __cinit__(self, bytes header):
        self.header = header
        self.cap = 4096
        self.buf = <char*>PyMem_Malloc(self.cap)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.buf)

    def encode(self, dict r):
        """The record in the Confluent wire format; raises if a value is not exactly of its type."""
        self.n = 0
        self.put_bytes(PyBytes_AS_STRING(self.header), PyBytes_GET_SIZE(self.header))
        self.put_string(field(r, "request_id"))
        self.put_string(field(r, "entity_id"))
        self.put_string(field(r, "model"))
        self.put_string(field(r, "model_version"))
        self.put_double_map(field(r, "numeric"), True)
        self.put_string_map(field(r, "categorical"))
        self.put_optional_string(field(r, "predicted_label"))
        self.put_optional_double(field(r, "predicted_value"))
        self.put_double_map(field(r, "scores"), False)
        self.put_optional_double(field(r, "confidence"))
        self.put_optional_string(field(r, "true_label"))
        self.put_optional_double(field(r, "true_value"))
        self.put_long(checked_long(field(r, "event_time"), False))
        self.put_long(checked_long(field(r, "predicted_at"), False))
        self.put_long(checked_long(field(r, "labelled_at"), False))
        self.put_long(checked_long(field(r, "label_count"), True))
        self.put_string_array(field(r, "flags"))
        return PyBytes_FromStringAndSize(self.buf, self.n)

    cdef int put_bytes(self, const char* data, Py_ssize_t size) except -1:
        cdef char* grown
        if self.n + size > self.cap:
            while self.n + size > self.cap:
                self.cap *= 2
            grown = <char*>PyMem_Realloc(self.buf, self.cap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
        memcpy(self.buf + self.n, data, size)
        self.n += size
        return 0

    cdef int put_byte(self, unsigned char b) except -1:
        return self.put_bytes(<const char*>&b, 1)

    cdef int put_long(self, int64_t v) except -1:
        cdef unsigned char out[10]
        cdef uint64_t z = (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)
        cdef int k = 0
        while z > 0x7F:
            out[k] = <unsigned char>((z & 0x7F) | 0x80)
            z >>= 7
            k += 1
        out[k] = <unsigned char>z
        return self.put_bytes(<const char*>out, k + 1)

    cdef int put_string(self, object s) except -1:
        cdef Py_ssize_t size
        cdef const char* data
        if type(s) is not str:
            raise Refused("not a str")
        data = PyUnicode_AsUTF8AndSize(s, &size)       # UnicodeEncodeError for a lone surrogate
        self.put_long(size)
        return self.put_bytes(data, size)

    cdef int put_double(self, object v) except -1:
        cdef double d
        cdef uint64_t bits
        cdef unsigned char out[8]
        cdef int i
        if type(v) is float:
            d = <double>v
        elif type(v) is int:
            d = <double>v                                # OverflowError past a double's range
        else:
            raise Refused("not a float")
        memcpy(&bits, &d, 8)
        for i in range(8):
            out[i] = <unsigned char>(bits >> (8 * i))
        return self.put_bytes(<const char*>out, 8)

    cdef int put_optional_string(self, object s) except -1:
        if s is None:
            return self.put_byte(0)
        self.put_byte(2)
        return self.put_string(s)

    cdef int put_optional_double(self, object v) except -1:
        if v is None:
            return self.put_byte(0)
        self.put_byte(2)
        return self.put_double(v)

    cdef int put_double_map(self, object m, bint optional) except -1:
        """map<union<null, double>> (`optional`) or map<double>: in one block, as fastavro writes it."""
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        if type(m) is not dict:
            raise Refused("not a dict")
        if m:
            self.put_long(len(m))
            while PyDict_Next(m, &pos, &k, &v):
                self.put_string(<object>k)
                if optional:
                    self.put_optional_double(<object>v)
                else:
                    self.put_double(<object>v)
        return self.put_byte(0)

    cdef int put_string_map(self, object m) except -1:
        """map<union<null, string>>."""
        cdef Py_ssize_t pos = 0
        cdef PyObject* k
        cdef PyObject* v
        if type(m) is not dict:
            raise Refused("not a dict")
        if m:
            self.put_long(len(m))
            while PyDict_Next(m, &pos, &k, &v):
                self.put_string(<object>k)
                self.put_optional_string(<object>v)
        return self.put_byte(0)

    cdef int put_string_array(self, object items) except -1:
        if type(items) is not list:
            raise Refused("not a list")
        if items:
            self.put_long(len(items))
            for s in items:
                self.put_string(s)
        return self.put_byte(0)


cdef object field(dict r, str name):
    cdef PyObject* v = PyDict_GetItem(r, name)
    if v == NULL:
        raise Refused(f"no {name}")
    return <object>v


cdef int64_t checked_long(object v, bint int32) except? -1:
    if type(v) is not int:
        raise Refused("not an int")
    cdef int64_t n = v                                   # OverflowError past 64 bits
    if int32 and not INT32_MIN <= n <= INT32_MAX:
        raise Refused("int beyond 32 bits")
    return n
