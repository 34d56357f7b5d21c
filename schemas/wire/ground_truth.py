"""GroundTruth records (schemas/avro/GroundTruth.avsc) read a batch at a time: on the compiled core
where it is built, and by fastavro for every record it leaves (and on the Python path), so a
record fastavro cannot read is refused with fastavro's reason on either path."""
from flywheel.schemas.serde import AvroSerde, DecodeFailure
from flywheel.schemas.wire.compiled import records as compiled_records
from flywheel.schemas.wire.compiled import runs
from flywheel.schemas.wire.self_test import agrees

FIELDS = [("request_id", "string"), ("model", "union"), ("label", "union"), ("value", "union"),
          ("labelled_at", "long"), ("source", "string"), ("reviewer", "union"), ("note", "union")]
SAMPLES = [
    {"request_id": "r-é", "model": "m", "label": "yes", "value": None, "labelled_at": 1_700_000_000_123,
     "source": "review", "reviewer": "ann", "note": ""},
    {"request_id": "", "model": None, "label": None, "value": -2.5, "labelled_at": -5, "source": "",
     "reviewer": None, "note": None},
]


class GroundTruthDecoder:
    def __init__(self, serde: AvroSerde, compiled: bool = True):
        """`compiled`: on the compiled core where it is built."""
        self.serde = serde
        self.path = runs(compiled and serde.field_kinds() == FIELDS)
        if self.path == "compiled" and not agrees(self._compiled, serde, SAMPLES):
            self.path = "python"

    def decode_many(self, values: list[bytes | None]) -> list[dict | DecodeFailure]:
        """As `AvroSerde.decode_many`: each record, or why it could not be decoded."""
        if self.path == "python":
            return self.serde.decode_many(values)
        done, rest = compiled_records.decode_ground_truths(values, self.serde._header)
        out: list = [None] * len(values)
        for i, record in done:
            out[i] = record
        for i, decoded in zip(rest, self.serde.decode_many([values[i] for i in rest])):
            out[i] = decoded
        return out

    def _compiled(self, values: list[bytes]) -> list[dict]:
        return [r for _, r in compiled_records.decode_ground_truths(values, self.serde._header)[0]]
