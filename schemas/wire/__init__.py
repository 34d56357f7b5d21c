"""Fast paths over the Avro wire format beside (never instead of) fastavro: one value at a time
(`primitives`), or whole batches as numpy columns (`cursor`, `prediction`)."""
