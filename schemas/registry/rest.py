"""The embedded registry over HTTP: the subset of the Confluent Schema Registry REST API that
clients use (serializers, deserializers, kcat, Java services), so any Confluent client can resolve
the schema ids in Flywheel's records. It serves the same SQLite file every Flywheel process uses.

Routes: GET /subjects, /subjects/{s}/versions, /subjects/{s}/versions/{v|latest}[/schema],
/schemas/ids/{id}[/schema], /schemas/types; POST /subjects/{s}/versions (register),
/subjects/{s} (lookup), /compatibility/subjects/{s}/versions[/{v}]; GET and PUT /config and
/config/{s}. Errors are Confluent's: {"error_code": 40401, "message": ...}.
"""
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import avro.errors
import avro.schema
from flywheel.schemas import compatibility
from flywheel.schemas.errors import IncompatibleSchema, UnknownSchemaId
from flywheel.schemas.registry.embedded import GLOBAL, EmbeddedRegistry

from flywheel.errors import UserError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class Reply:
    status: int
    body: object


class ApiError(UserError):
    """The HTTP client's request is wrong: answered as Confluent's error reply, never raised past
    the server."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.reply = Reply(status, {"error_code": code, "message": message})


def _subject_not_found(subject: str) -> ApiError:
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


def _normal(schema_text: str) -> str:
    """Whitespace and key order do not make a different schema."""
    return json.dumps(json.loads(schema_text), sort_keys=True, separators=(",", ":"))


class RegistryApi:
    """The routes as plain methods over the embedded registry; one request at a time, since the
    registry's SQLite connection and its registration transaction are not shared safely."""

    def __init__(self, registry: EmbeddedRegistry):
        self.registry = registry
        self._lock = threading.Lock()
        self._routes = [
            ("GET", r"/", lambda: Reply(200, {})),
            ("GET", r"/subjects", lambda: Reply(200, self.registry.subjects())),
            ("GET", r"/schemas/types", lambda: Reply(200, ["AVRO"])),
            ("GET", r"/subjects/(?P<subject>[^/]+)/versions", self.version_numbers),
            ("GET", r"/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)", self.version),
            ("GET", r"/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)/schema", self.version_schema),
            ("GET", r"/schemas/ids/(?P<schema_id>[^/]+)", self.by_id),
            ("GET", r"/schemas/ids/(?P<schema_id>[^/]+)/schema", self.by_id_raw),
            ("POST", r"/subjects/(?P<subject>[^/]+)/versions", self.register),
            ("POST", r"/subjects/(?P<subject>[^/]+)", self.lookup),
            ("POST", r"/compatibility/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)", self.compatible),
            ("POST", r"/compatibility/subjects/(?P<subject>[^/]+)/versions", self.compatible_all),
            ("GET", r"/config", lambda: Reply(200, {"compatibilityLevel": self.registry.compatibility(GLOBAL)})),
            ("PUT", r"/config", lambda body: self.set_config(GLOBAL, body)),
            ("GET", r"/config/(?P<subject>[^/]+)", self.config),
            ("PUT", r"/config/(?P<subject>[^/]+)", lambda subject, body: self.set_config(subject, body)),
        ]

    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None) -> Reply:
        for verb, pattern, route in self._routes:
            found = re.fullmatch(pattern, path.rstrip("/") or "/")
            if verb == method and found:
                args = {k: unquote(v) for k, v in found.groupdict().items()}
                if method in ("POST", "PUT"):
                    args["body"] = body if isinstance(body, dict) else {}
                if route.__name__ in ("compatible", "compatible_all"):
                    args["verbose"] = query.get("verbose", "false").lower() == "true"
                with self._lock:
                    try:
                        return route(**args)
                    except ApiError as e:
                        return e.reply
        return Reply(404, {"error_code": 404, "message": f"HTTP 404 Not Found: {method} {path}"})

    # ---- subjects and versions
    def _registered(self, subject: str) -> list[tuple[int, int, str]]:
        rows = self.registry.registered(subject)
        if not rows:
            raise _subject_not_found(subject)
        return rows

    def _version(self, subject: str, version: str) -> tuple[int, int, str]:
        rows = self._registered(subject)
        if version in ("latest", "-1"):
            return rows[-1]
        if not version.isdigit() or int(version) < 1:
            raise ApiError(422, 42202, f"The specified version '{version}' is not a valid version id. "
                                       "Allowed values are between [1, 2^31-1] and the string \"latest\"")
        found = next((row for row in rows if row[0] == int(version)), None)
        if found is None:
            raise ApiError(404, 40402, f"Version {version} not found.")
        return found

    def version_numbers(self, subject: str) -> Reply:
        return Reply(200, [row[0] for row in self._registered(subject)])

    def version(self, subject: str, version: str) -> Reply:
        number, schema_id, text = self._version(subject, version)
        return Reply(200, {"subject": subject, "version": number, "id": schema_id, "schema": text})

    def version_schema(self, subject: str, version: str) -> Reply:
        return Reply(200, json.loads(self._version(subject, version)[2]))

    # ---- schemas by id
    def _schema(self, schema_id: str) -> str:
        try:
            return self.registry.schema_by_id(int(schema_id))
        except (UnknownSchemaId, ValueError):
            raise ApiError(404, 40403, f"Schema {schema_id} not found") from None

    def by_id(self, schema_id: str) -> Reply:
        return Reply(200, {"schema": self._schema(schema_id)})

    def by_id_raw(self, schema_id: str) -> Reply:
        return Reply(200, json.loads(self._schema(schema_id)))

    # ---- register and look up
    def _schema_text(self, body: dict) -> str:
        if body.get("schemaType", "AVRO") != "AVRO":
            raise ApiError(422, 42201, f"Invalid schema type {body['schemaType']}: this registry holds Avro only")
        if body.get("references"):
            raise ApiError(422, 42201, "Schema references are not supported by the embedded registry")
        text = body.get("schema")
        try:
            avro.schema.parse(text)
        except (avro.errors.SchemaParseException, TypeError, ValueError) as e:
            raise ApiError(422, 42201, f"Invalid schema: {e}") from None
        return text

    def _same(self, subject: str, text: str) -> tuple[int, int, str] | None:
        wanted = _normal(text)
        return next((row for row in self.registry.registered(subject) if _normal(row[2]) == wanted), None)

    def register(self, subject: str, body: dict) -> Reply:
        text = self._schema_text(body)
        same = self._same(subject, text)
        if same:
            return Reply(200, {"id": same[1]})
        try:
            return Reply(200, {"id": self.registry.register(subject, text)})
        except IncompatibleSchema as e:
            return Reply(409, {"error_code": 409, "message": str(e)})

    def lookup(self, subject: str, body: dict) -> Reply:
        text = self._schema_text(body)
        self._registered(subject)
        same = self._same(subject, text)
        if same is None:
            raise ApiError(404, 40403, "Schema not found")
        return Reply(200, {"subject": subject, "version": same[0], "id": same[1], "schema": same[2]})

    # ---- compatibility
    def _check(self, subject: str, text: str, against: list[str], mode: str, verbose: bool) -> Reply:
        try:
            compatibility.check(subject, text, against, mode)
        except IncompatibleSchema as e:
            return Reply(200, {"is_compatible": False, **({"messages": e.problems} if verbose else {})})
        return Reply(200, {"is_compatible": True, **({"messages": []} if verbose else {})})

    def compatible(self, subject: str, version: str, body: dict, verbose: bool) -> Reply:
        text = self._schema_text(body)
        against = self._version(subject, version)[2]
        mode = self.registry.compatibility(subject).removesuffix("_TRANSITIVE")
        return self._check(subject, text, [against], mode, verbose)

    def compatible_all(self, subject: str, body: dict, verbose: bool) -> Reply:
        text = self._schema_text(body)
        earlier = [row[2] for row in self.registry.registered(subject)]
        return self._check(subject, text, earlier, self.registry.compatibility(subject), verbose)

    # ---- config
    def config(self, subject: str) -> Reply:
        # Confluent answers 40408 for a subject without its own level unless defaultToGlobal; the
        # level that applies is what a client asking wants, so it is given either way.
        return Reply(200, {"compatibilityLevel": self.registry.compatibility(subject)})

    def set_config(self, subject: str, body: dict) -> Reply:
        mode = str(body.get("compatibility", "")).upper()
        if mode not in compatibility.MODES:
            raise ApiError(422, 42203, f"Invalid compatibility level {mode!r}; one of {', '.join(compatibility.MODES)}")
        self.registry.set_compatibility(subject, mode)
        return Reply(200, {"compatibility": mode})


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    # A connection that sends nothing holds a thread and a connection slot: it is closed after this.
    timeout = 10

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self._send(Reply(400, {"error_code": 400, "message": "the request body is not JSON"}))
                return
        self._send(self.server.api.handle(self.command, url.path, query, body))

    do_GET = do_POST = do_PUT = _serve

    def _send(self, reply: Reply) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # one line per request on stderr would drown the live view
        pass


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once: one more is answered 503 (a
    client retries that as an unavailable registry) and closed, so a flood of connections costs
    no more threads."""
    daemon_threads = True

    def __init__(self, address, api: RegistryApi, max_connections: int):
        super().__init__(address, _Handler)
        self.api = api
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: " + CONTENT_TYPE.encode() +
        b"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")


class RegistryServer:
    """The REST API in a thread of the process that starts it (`flywheel up`)."""

    def __init__(self, registry: EmbeddedRegistry, port: int, max_connections: int = 64, host: str = "127.0.0.1"):
        self._server = _Server((host, port), RegistryApi(registry), max_connections)  # OSError if the port is taken
        self._thread = threading.Thread(target=self._server.serve_forever, name="schema-registry", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RegistryServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
