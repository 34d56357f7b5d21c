"""`flywheel models` as a user meets it, and `flywheel publish` checking requests against the
registered model's feature spec."""
import json

from flywheel.cli import main
from tests.test_worker_support import small_model


def _flags(kafka, data_dir):
    return ["--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix, "--data-dir", str(data_dir)]


def test_register_deploy_promote_rollback_and_publish_checks(kafka, data_dir, make_topics, tmp_path, capsys):
    make_topics()
    flags = _flags(kafka, data_dir)
    for version, seed in (("v1", 0), ("v2", 1), ("v3", 2)):
        onnx, manifest, _ = small_model(version, seed=seed)
        (tmp_path / f"{version}.onnx").write_bytes(onnx)
        (tmp_path / f"{version}.json").write_text(json.dumps(manifest.to_dict()))
        assert main([*flags, "models", "register", "m", version, "--onnx", str(tmp_path / f"{version}.onnx"),
                     "--manifest", str(tmp_path / f"{version}.json")]) == 0
    assert main([*flags, "models", "deploy", "m", "v2", "--canary", "20"]) == 0
    assert main([*flags, "models", "deploy", "m", "v3", "--shadow"]) == 0
    capsys.readouterr()
    assert main([*flags, "models", "list", "--json"]) == 0
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (event["live_version"], event["canary_version"], event["canary_share"], event["shadow_versions"]) == \
        ("v1", "v2", 0.2, ["v3"])
    assert main([*flags, "models", "promote", "m"]) == 0
    assert main([*flags, "models", "rollback", "m"]) == 0
    assert main([*flags, "models", "list", "--json"]) == 0
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (event["kind"], event["version"], event["live_version"]) == ("ROLLED_BACK", "v2", "v1")
    assert main([*flags, "models", "deploy", "m", "v9", "--canary", "5"]) == 1
    assert "no version 'v9'" in capsys.readouterr().err

    # publish validates against the live version's feature spec
    row = small_model()[2].rows(0, 1)[0]
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps(row) + "\n")
    bad.write_text(json.dumps({k: v for k, v in row.items() if k != "f02"}) + "\n")
    assert main([*flags, "publish", "-m", "m", str(good)]) == 0
    assert main([*flags, "publish", "-m", "m", str(bad)]) == 1
    assert "feature 'f02': required and missing" in capsys.readouterr().err
