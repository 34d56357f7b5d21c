"""The embedded registry's Confluent REST API, used by confluent-kafka's own client: a Prediction
the worker produced is decoded by AvroDeserializer, and the client's register, lookup,
compatibility and config calls behave as Confluent's server does."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from flywheel.schemas import load_schema, subject_for
from flywheel.schemas.errors import IncompatibleSchema, RegistryAccessDenied, RegistryUnavailable
from flywheel.schemas.errors import SchemaRegistryError as OurRegistryError
from flywheel.schemas.registry.confluent import ConfluentRegistry
from flywheel.schemas.registry.rest import RegistryServer
from flywheel.streams.broker import free_port
from flywheel.streams.clients import make_consumer
from flywheel.streams.publisher import Publisher

from flywheel.errors import BadInput
from tests.test_worker_support import RunningWorker, register, small_model

RECORD = {"type": "record", "name": "Thing", "namespace": "t",
          "fields": [{"name": "a", "type": "string"}]}


def _schema(*extra_fields) -> str:
    return json.dumps({**RECORD, "fields": RECORD["fields"] + list(extra_fields)})


@pytest.fixture
def server(registry):
    with RegistryServer(registry, free_port()) as running:
        yield running


def test_a_confluent_deserializer_decodes_the_workers_predictions(kafka, registry, data_dir, make_topics, server):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    _, manifest, data = small_model()
    publisher = Publisher(kafka, registry, "m", manifest.features)
    sent = publisher.publish_many(data.rows(0, 3))
    publisher.flush()
    topic = catalog.predictions("m")
    consumer = make_consumer(kafka, "confluent-reader")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(kafka.partitions)])
    got = []
    with RunningWorker(kafka, registry, data_dir):
        for _ in range(150):
            got += [m for m in consumer.consume(10, 0.2) if m.error() is None]
            if len(got) >= 3:
                break
    consumer.close()
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": server.url}))  # the writer's schema by id
    decoded = [deserialize(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in got]
    assert sorted(d["request_id"] for d in decoded) == sorted(sent)
    assert all(d["model"] == "m" and d["model_version"] == "v1" and d["label"] in manifest.output.labels
               for d in decoded)


def test_the_client_api_subset(registry, server):
    client = SchemaRegistryClient({"url": server.url})
    subject = subject_for("Prediction")
    prediction_id = registry.register(subject, load_schema("Prediction"))
    assert subject in client.get_subjects()
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (prediction_id, 1)
    assert json.loads(client.get_schema(prediction_id).schema_str) == json.loads(load_schema("Prediction"))

    first = client.register_schema("things", Schema(_schema(), "AVRO"))
    again = client.register_schema("things", Schema(json.dumps(json.loads(_schema()), indent=4), "AVRO"))
    assert again == first                         # the same schema, however it is spaced
    evolved = _schema({"name": "b", "type": "int", "default": 0})
    second = client.register_schema("things", Schema(evolved, "AVRO"))
    assert second != first and client.get_versions("things") == [1, 2]
    assert client.lookup_schema("things", Schema(_schema(), "AVRO")).version == 1
    assert client.get_version("things", 2).schema_id == second
    assert registry.schema_by_id(second) == evolved   # the same SQLite registry Flywheel reads

    breaking = _schema({"name": "c", "type": "int"})  # no default: old records cannot be read
    assert client.test_compatibility("things", Schema(breaking, "AVRO")) is False
    assert client.test_compatibility("things", Schema(evolved, "AVRO"), version=1) is True
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("things", Schema(breaking, "AVRO"))
    assert refused.value.http_status_code == 409 and "field 'c'" in refused.value.error_message

    assert client.get_compatibility() == "BACKWARD"
    client.set_compatibility("things", "NONE")
    assert client.get_compatibility("things") == "NONE" and registry.compatibility("things") == "NONE"
    client.set_compatibility(level="FULL")
    assert client.get_compatibility() == "FULL" and registry.compatibility("other") == "FULL"
    assert client.register_schema("things", Schema(breaking, "AVRO")) > second

    for call, status, code in [(lambda: client.get_versions("nosuch"), 404, 40401),
                               (lambda: client.get_version("things", 99), 404, 40402),
                               (lambda: client.get_schema(9999), 404, 40403),
                               (lambda: client.lookup_schema("things", Schema(_schema({"name": "z", "type": "int"}),
                                                                              "AVRO")), 404, 40403),
                               (lambda: client.register_schema("things", Schema('{"type": "nonsense"}', "AVRO")),
                                422, 42201),
                               (lambda: client.set_compatibility("things", "SIDEWAYS"), 422, 42203)]:
        with pytest.raises(SchemaRegistryError) as e:
            call()
        assert (e.value.http_status_code, e.value.error_code) == (status, code)


def test_flywheels_own_confluent_registry_works_against_it(registry, server):
    remote = ConfluentRegistry(server.url)
    schema_id = remote.register("things", _schema())
    assert registry.schema_by_id(schema_id) == _schema() and remote.schema_by_id(schema_id) == _schema()
    with pytest.raises(IncompatibleSchema, match="field 'c'"):
        remote.register("things", _schema({"name": "c", "type": "int"}))


def test_connections_past_the_bound_are_answered_busy_which_is_backpressure(registry):
    """Two connections that send nothing hold both slots: a third is answered 503 at once (no
    thread of its own), which Flywheel's client takes as an unavailable registry; once they
    close, requests are served again."""
    with RegistryServer(registry, free_port(), max_connections=2) as running:
        remote = ConfluentRegistry(running.url)
        schema_id = remote.register("things", _schema())
        host, port = running.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(2)]
        with pytest.raises(RegistryUnavailable, match="503"):
            remote.versions("things")         # not cached by the client, unlike a schema by id
        for s in idle:
            s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert remote.schema_by_id(schema_id) == _schema()
                break
            except RegistryUnavailable:      # the handlers see the close on their next read
                time.sleep(0.05)
        else:
            raise AssertionError("the registry did not serve again after the idle connections closed")


def test_an_unreachable_registry_is_backpressure_for_every_call():
    """Refused connections are RegistryUnavailable (retried by the processors), never the HTTP
    client's own exception types."""
    remote = ConfluentRegistry(f"http://127.0.0.1:{free_port()}")
    for call in (lambda: remote.register("things", _schema()), lambda: remote.schema_by_id(1),
                 lambda: remote.versions("things"), lambda: remote.compatibility("things"),
                 lambda: remote.set_compatibility("things", "BACKWARD")):
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            call()


class RefusesEveryone(BaseHTTPRequestHandler):
    """A registry behind authentication that refuses whatever credentials it is given."""

    def _refuse(self):
        body = json.dumps({"error_code": 401, "message": "Unauthorized"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):
        pass


def test_refused_credentials_are_the_users_settings_to_fix_for_every_call():
    """Not backpressure (waiting does not mend a wrong password) and not the HTTP client's own
    exception: one line naming the settings."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusesEveryone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = ConfluentRegistry(f"http://127.0.0.1:{server.server_port}")
        for call in (lambda: remote.register("things", _schema()), lambda: remote.schema_by_id(1),
                     lambda: remote.versions("things"), lambda: remote.compatibility("things"),
                     lambda: remote.set_compatibility("things", "BACKWARD")):
            with pytest.raises(RegistryAccessDenied, match="schema_registry_password") as refused:
                call()
            assert isinstance(refused.value, BadInput)
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_flywheel_does_not_expect_is_ours_not_the_clients(server):
    with pytest.raises(OurRegistryError, match="NOT_A_MODE") as e:
        ConfluentRegistry(server.url).set_compatibility("things", "NOT_A_MODE")
    assert not isinstance(e.value, (RegistryUnavailable, BadInput))
