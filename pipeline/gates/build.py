"""build: the artifact that would ship, its digests, SBOM and signed provenance.

- A wheel, built from the tree with setuptools' PEP 517 backend (no network, timestamps
  fixed to the commit's time so that the same commit gives the same digest).
- The image context: the files the Dockerfile copies, as a deterministic tar; its digest
  is what a container build consumes.
- A CycloneDX SBOM of `requirements-runtime.lock`, what the image installs (not the dev lock).
- An in-toto Statement v1 with a SLSA Provenance v1 predicate naming all three, in a DSSE
  envelope signed with the pipeline's key (`pipeline.provenance`).

The digests go into the gate record's subject, so promotion can require that the artifact
being deployed is the one this gate built.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from pipeline import provenance
from pipeline.gates.step import (
    Gate,
    GateStep,
    Observation,
    Tool,
    dist_version,
    load_json,
    locked_pins,
    now,
    tool_error,
)
from pipeline.keys import signing_identity
from pipeline.workspace import config_digest, run_tool, sha256_bytes, sha256_file

RUNTIME_LOCK = "requirements-runtime.lock"
REPOSITORY = "https://github.com/moneypath/moneypath"
_COPY = re.compile(r"^\s*COPY\s+(?!--from)(?:--\S+\s+)*(.+)$", re.IGNORECASE | re.MULTILINE)
_WHEEL_SCRIPT = (
    "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
)
MAX_CONTEXT_FILES = 20_000


def _commit_time(root: Path) -> str:
    run = run_tool(["git", "log", "-1", "--format=%ct"], cwd=root, timeout_s=30)
    stamp = run.stdout.strip()
    # 1980-01-01: the earliest time a zip (wheel) can hold.
    return stamp if run.exit_code == 0 and stamp.isdigit() else "315532800"


def context_sources(root: Path) -> tuple[list[Path], list[str]]:
    """The files the Dockerfile's COPY lines take from the context, and the missing ones."""
    dockerfile = root / "Dockerfile"
    text = dockerfile.read_text() if dockerfile.is_file() else ""
    files: set[Path] = {dockerfile} if dockerfile.is_file() else set()
    missing: list[str] = []
    for match in _COPY.finditer(text):
        for source in match[1].split()[:-1]:
            path = root / source
            if path.is_file():
                files.add(path)
            elif path.is_dir():
                files.update(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                )
            else:
                missing.append(source)
    return sorted(files)[:MAX_CONTEXT_FILES], missing


def context_tar(root: Path, files: list[Path]) -> bytes:
    """A tar of `files` that depends only on their paths and bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _wheel(step: GateStep, epoch: str) -> tuple[Path | None, str | None]:
    ws = step.ws
    out = step.folder / "dist"
    for old in out.glob("*.whl"):
        old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    run = run_tool(
        [ws.tool("python"), "-c", _WHEEL_SCRIPT, str(out)],
        cwd=ws.root,
        timeout_s=ws.timeout_s,
        env={"SOURCE_DATE_EPOCH": epoch},
    )
    name = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    wheel = out / name
    if run.exit_code != 0 or not name.endswith(".whl") or not wheel.is_file():
        return None, tool_error(run)
    return wheel, None


def _sbom(step: GateStep) -> tuple[Path, str | None]:
    ws = step.ws
    report = step.fresh("runtime-sbom.cdx.json")
    argv = [ws.tool("cyclonedx-py"), "requirements", "--of", "JSON", "--sv", "1.6"]
    argv += ["--output-reproducible", "--validate", "-o", str(report), RUNTIME_LOCK]
    run = run_tool(argv, cwd=ws.root, timeout_s=ws.timeout_s)
    return report, None if run.exit_code == 0 and report.is_file() else tool_error(run)


def observe(step: GateStep) -> Observation:
    ws = step.ws
    started_on = now()
    facts: dict[str, Any] = {"errors": [], "artifacts": {}}
    epoch = _commit_time(ws.root)
    wheel, error = _wheel(step, epoch)
    if wheel is not None:
        # The wheel stays in reports/ (it can exceed an attachment's size limit); its
        # digest is in the record and in the signed provenance.
        facts["artifacts"]["wheel:" + wheel.name] = sha256_file(wheel)
    else:
        facts["errors"].append(f"wheel: {error}")
    files, missing = context_sources(ws.root)
    facts["context_missing"] = missing
    facts["context_files"] = len(files)
    context = context_tar(ws.root, files)
    facts["artifacts"]["image-context"] = sha256_bytes(context)
    (step.folder / "image-context.tar").write_bytes(context)
    sbom_path, error = _sbom(step)
    if error is None:
        facts["artifacts"]["sbom:runtime"] = sha256_file(sbom_path)
        step.attach(sbom_path, "application/vnd.cyclonedx+json")
        components = (load_json(sbom_path) or {}).get("components", [])
        facts["sbom_components"] = len(components)
    else:
        facts["errors"].append(f"sbom: {error}")
    lock = ws.root / RUNTIME_LOCK
    facts["runtime_pins"] = len(locked_pins(lock.read_text())) if lock.is_file() else 0
    facts["signed"] = _provenance(step, facts, epoch, started_on.isoformat())
    step.outputs.update(facts["artifacts"])
    digest = config_digest(
        [_WHEEL_SCRIPT, "cyclonedx-py requirements --sv 1.6", RUNTIME_LOCK],
        [ws.root / "pyproject.toml", ws.root / "Dockerfile", lock],
        ws.root,
        step.volatile(),
    )
    return Observation(
        Tool(
            "moneypath-build",
            f"setuptools {dist_version('setuptools')}; "
            f"cyclonedx-bom {dist_version('cyclonedx-bom')}",
            digest,
        ),
        facts,
        {"artifacts": len(facts["artifacts"]), "errors": len(facts["errors"])},
    )


def _provenance(step: GateStep, facts: dict[str, Any], epoch: str, started_on: str) -> bool:
    """Write the statement and, when the pipeline's key is configured, its DSSE envelope."""
    ws = step.ws
    head = run_tool(["git", "rev-parse", "HEAD"], cwd=ws.root, timeout_s=30)
    commit = head.stdout.strip() if head.exit_code == 0 else "unknown"
    document = provenance.statement(
        facts["artifacts"],
        commit=commit,
        repository=REPOSITORY,
        parameters={
            "source_date_epoch": epoch,
            "runtime_lock": sha256_file(ws.root / RUNTIME_LOCK),
        },
        dependencies=[],
        invocation_id=step.name + "@" + started_on,
        started_on=started_on.replace("+00:00", "Z"),
        finished_on=now().isoformat().replace("+00:00", "Z"),
    )
    step.attach(
        step.write("provenance.intoto.json", json.dumps(document, indent=1)),
        "application/vnd.in-toto+json",
    )
    identity = signing_identity()
    if identity is None:
        facts["signing"] = "no pipeline key configured (PIPELINE_KEY_ID, PIPELINE_SIGNING_KEY)"
        return False
    key_id, key = identity
    envelope = provenance.sign(document, key_id, key)
    step.attach(
        step.write("provenance.dsse.json", json.dumps(envelope, indent=1)),
        "application/vnd.dsse.envelope.v1+json",
    )
    facts["signing"] = {"key_id": key_id, "public_key_pem": provenance.public_key_pem(key)}
    return True


GATE = Gate("build", ("SOC2:CC8.1", "PCI-DSS-4.0.1:6.5.1", "PCI-DSS-4.0.1:6.3.2"), observe)
