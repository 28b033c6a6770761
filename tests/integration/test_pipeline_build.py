"""The build gate: wheel and image-context digests, the runtime SBOM, and SLSA provenance
signed in a DSSE envelope with the pipeline's key; real setuptools, cyclonedx-py and OPA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline import provenance
from pipeline.gates import GATES
from pipeline.runner import decide_gate
from tests.support.pipeline_project import make_project, workspace


@pytest.fixture
def pipeline_key(monkeypatch: pytest.MonkeyPatch) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    monkeypatch.setenv("PIPELINE_KEY_ID", "key_pipeline_test")
    monkeypatch.setenv("PIPELINE_SIGNING_KEY_PEM", pem)
    monkeypatch.delenv("PIPELINE_SIGNING_KEY", raising=False)
    return key


def test_build_gate_signs_provenance_naming_every_artifact_when_the_key_is_set(
    tmp_path: Path, pipeline_key: Ed25519PrivateKey
) -> None:
    root = make_project(tmp_path / "repo", pins=("jinja2==3.1.6", "markupsafe==3.0.2"))
    # What ships is the runtime lock: one pin, while the dev lock has two.
    runtime = (root / "requirements-runtime.lock").read_text().split("markupsafe")[0]
    (root / "requirements-runtime.lock").write_text(runtime)
    ws = workspace(root)
    result = GATES["build"](ws)
    decision = decide_gate(ws, result, [])
    assert decision["result"] == "pass", decision["violations"]
    outputs = result.outputs
    assert {name.split(":")[0] for name in outputs} == {"wheel", "image-context", "sbom"}
    assert next(n for n in outputs if n.startswith("wheel:")).startswith("wheel:demo-0.1.0-")
    assert result.facts["sbom_components"] == result.facts["runtime_pins"] == 1

    envelope = json.loads((ws.reports_dir / "build" / "provenance.dsse.json").read_text())
    signing = result.facts["signing"]
    statement = provenance.verify(envelope, signing["key_id"], signing["public_key_pem"])
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    named = {s["name"]: "sha256:" + s["digest"]["sha256"] for s in statement["subject"]}
    assert named == outputs

    # Any change to the signed bytes breaks the signature.
    envelope["payload"] = envelope["payload"][:-4] + "AAA="
    with pytest.raises(ValueError, match="does not verify"):
        provenance.verify(envelope, signing["key_id"], signing["public_key_pem"])


def test_build_digests_repeat_when_the_same_tree_is_built_twice(
    tmp_path: Path, pipeline_key: Ed25519PrivateKey
) -> None:
    root = make_project(tmp_path / "repo")
    first = GATES["build"](workspace(root)).outputs
    second = GATES["build"](workspace(root)).outputs
    assert first == second
    (root / "demo" / "calc.py").write_text("VALUE = 1\n")
    changed = GATES["build"](workspace(root)).outputs
    assert changed["image-context"] == first["image-context"], "demo/ is not in the image"
    wheel = next(n for n in first if n.startswith("wheel:"))
    assert changed[wheel] != first[wheel]


def test_build_gate_fails_when_no_pipeline_key_signs_the_provenance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PIPELINE_KEY_ID", "PIPELINE_SIGNING_KEY", "PIPELINE_SIGNING_KEY_PEM"):
        monkeypatch.delenv(name, raising=False)
    ws = workspace(make_project(tmp_path / "repo"))
    decision = decide_gate(ws, GATES["build"](ws), [])
    assert decision["result"] == "fail"
    assert any(v.startswith("build: provenance unsigned") for v in decision["violations"])
