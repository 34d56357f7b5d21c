"""A secret, set in each supported way (config file, environment, a file named by the config file,
a file named by the environment), appears in no output: the main commands' stdout and stderr, a
worker's log lines, every file under the data dir, /metrics, `status --once` and the HTML
report; nor in the error a malformed setting raises."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from flywheel.streams.broker import free_port

from flywheel.stack import ProcessSpec, StackState
from tests.test_worker_support import small_model, wait_for

SECRETS = {
    "toml": "s3cr3t-in-the-config-file",
    "env": "s3cr3t-in-the-environment",
    "toml_file": "s3cr3t-from-a-file-the-config-names",
    "env_file": "s3cr3t-from-a-file-the-environment-names",
    "overrides": "s3cr3t-in-client-overrides",
}


def _setup(tmp_path: Path, kafka, data_dir: Path) -> dict:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "signing-key").write_text(SECRETS["toml_file"] + "\n")
    (secrets / "registry-password").write_text(SECRETS["env_file"])
    config = tmp_path / "flywheel.toml"
    config.write_text(f'[kafka]\nsasl_username = "flywheel"\nsasl_password = "{SECRETS["toml"]}"\n'
                      f'model_signing_key_file = "{secrets / "signing-key"}"\n'
                      f'[store.cassandra]\nusername = "flywheel"\n')
    env = {**os.environ, "FLYWHEEL_CONFIG": str(config), "FLYWHEEL_DATA_DIR": str(data_dir),
           "FLYWHEEL_BOOTSTRAP": kafka.bootstrap, "FLYWHEEL_TOPIC_PREFIX": kafka.topic_prefix,
           "FLYWHEEL_STORE_CASSANDRA_PASSWORD": SECRETS["env"],
           "FLYWHEEL_KAFKA_SCHEMA_REGISTRY_USERNAME": "flywheel",
           "FLYWHEEL_KAFKA_SCHEMA_REGISTRY_PASSWORD_FILE": str(secrets / "registry-password"),
           "FLYWHEEL_KAFKA_CLIENT_OVERRIDES": json.dumps({"sasl.oauthbearer.client.secret": SECRETS["overrides"]}),
           "FLYWHEEL_KAFKA_SESSION_TIMEOUT_MS": "6000", "COLUMNS": "200"}
    return env


def _cli(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "flywheel", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    return f"$ flywheel {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_a_planted_secret_appears_in_no_output(kafka, data_dir, make_topics, tmp_path):
    make_topics("m")
    env = _setup(tmp_path, kafka, data_dir)
    onnx, manifest, _ = small_model()
    (tmp_path / "m.onnx").write_bytes(onnx)
    (tmp_path / "m.json").write_text(json.dumps(manifest.to_dict()))
    outputs = [_cli(env, "models", "register", "m", "v1", "--onnx", str(tmp_path / "m.onnx"),
                    "--manifest", str(tmp_path / "m.json")),
               _cli(env, "models", "list"), _cli(env, "models", "list", "--json"), _cli(env, "topics")]
    assert outputs[0].splitlines()[0].endswith("-> 0"), outputs[0]

    port = free_port()
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "flywheel", "worker"],
                                  env={**env, "FLYWHEEL_METRICS_PORT": str(port)}, stdout=out, stderr=out)
    try:
        # The worker verified the registry's signed event (key from a file) and serves it.
        wait_for(lambda: "m serves v1" in log.read_text(), timeout=60)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'flywheel_model_version_info{model="m",role="LIVE",version="v1"} 1.0' in metrics
        outputs.append(metrics)
        stack = StackState(kafka.bootstrap, str(data_dir), time.time(), [ProcessSpec("worker", ["worker"], port,
                                                                                     worker.pid)])
        (data_dir / "stack.json").write_text(json.dumps(asdict(stack)))
        outputs.append(_cli(env, "status", "--once", "--interval", "0.2"))
        assert "worker" in outputs[-1] and outputs[-1].splitlines()[0].endswith("-> 0"), outputs[-1]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    outputs.append(_cli(env, "report", "--html", str(tmp_path / "report.html")))
    outputs.append((tmp_path / "report.html").read_text())
    outputs.append(log.read_text())
    outputs += [p.read_text(errors="replace") for p in data_dir.rglob("*") if p.is_file()]
    # A malformed setting next to a secret: a one-line error that does not echo it.
    broken = {**env, "FLYWHEEL_KAFKA_CLIENT_OVERRIDES": '{"sasl.password": "' + SECRETS["overrides"] + '"'}
    outputs.append(_cli(broken, "models", "list"))
    assert "is not valid JSON" in outputs[-1] and outputs[-1].splitlines()[0].endswith("-> 1")
    leaks = {i: _leaks(text) for i, text in enumerate(outputs) if _leaks(text)}
    assert not leaks, {i: (names, outputs[i][:300]) for i, names in leaks.items()}


def test_every_secret_setting_reads_from_config_env_or_file_and_never_prints(tmp_path):
    from flywheel.feature_store import StoreSettings
    from flywheel.schemas.secret import Secret

    from flywheel.config import ConfigError, load_config
    (tmp_path / "pw").write_text("from-file\n")
    config = tmp_path / "f.toml"
    config.write_text(f'[kafka]\nsasl_password_file = "{tmp_path / "pw"}"\nssl_key_password = "from-toml"\n')
    c = load_config(config, env={"FLYWHEEL_KAFKA_MODEL_SIGNING_KEY": "from-env",
                                 "FLYWHEEL_STORE_CASSANDRA_PASSWORD_FILE": str(tmp_path / "pw")})
    store = c.section(StoreSettings, "store")
    assert (c.kafka.sasl_password, c.kafka.ssl_key_password, c.kafka.model_signing_key, store.cassandra.password) == \
        (Secret("from-file"), Secret("from-toml"), Secret("from-env"), Secret("from-file"))
    shown = f"{c} {c.kafka} {store} {c.kafka.sasl_password}"
    assert not {"from-file", "from-toml", "from-env"} & set(shown.replace("'", " ").replace(",", " ").split())
    assert "from-" not in shown
    assert c.redact("librdkafka said from-env") == "librdkafka said <redacted>"
    from flywheel.streams.clients import security_config
    assert security_config(c.kafka)["sasl.password"] == "from-file"
    try:
        load_config(config, env={"FLYWHEEL_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    except ConfigError as e:
        assert "FLYWHEEL_KAFKA_SASL_PASSWORD_FILE" in str(e)
    else:
        raise AssertionError("a missing secret file must be an error")


def test_schema_registry_credentials_travel_as_basic_auth_never_in_the_url(tmp_path):
    """A real HTTP server stands in for the registry: it sees the credentials in the
    Authorization header, whether they came from settings or were written into the URL."""
    import base64
    import http.server
    import threading

    from flywheel.schemas.registry import RegistryAccess, open_registry, split_credentials
    from flywheel.schemas.secret import Secret

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = b'{"error_code": 40401, "message": "Subject not found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        access = RegistryAccess("flywheel", Secret(SECRETS["env"]))
        assert open_registry(url, tmp_path, access=access).versions("s-value") == []
        in_url = f"http://flywheel:{SECRETS['toml'].replace('-', '%2D')}@127.0.0.1:{server.server_port}"
        assert open_registry(in_url, tmp_path).versions("s-value") == []
    finally:
        server.shutdown()
        server.server_close()
    expected = [f"Basic {base64.b64encode(f'flywheel:{s}'.encode()).decode()}"
                for s in (SECRETS["env"], SECRETS["toml"])]
    assert seen == expected
    assert split_credentials(in_url)[0] == url and not _leaks(repr(access))
