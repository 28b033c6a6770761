"""One pipeline run: gates in order, a Rego verdict per gate, one evidence record per gate,
then a run record linking them all and a Rego verdict for the whole run.

Evidence is written through an `EvidenceSink`. With no sink (or a sink that fails), the
gate records carry no evidence id and the run policy fails the run: a run never passes
without evidence.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from app.platform.utc import rfc3339
from pipeline.gates import GATES, GateResult, Tool, attach
from pipeline.policy import PolicyError, bundle_digest, evaluate
from pipeline.summary import progress, publish, table
from pipeline.waivers import WaiverFileError
from pipeline.waivers import load as load_waivers
from pipeline.workspace import Workspace, run_tool, sha256_bytes, sha256_file

GATE_QUERY = "data.moneypath.pipeline.gates.decision"
RUN_QUERY = "data.moneypath.pipeline.run.decision"
RUN_CONTROLS = ("SOC2:CC8.1", "SOC2:CC7.1", "PCI-DSS-4.0.1:6.2.4", "PCI-DSS-4.0.1:6.3.3")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_FINDINGS = 30
MAX_FINDING_CHARS = 300


class EvidenceWriteError(RuntimeError):
    """The evidence service did not accept a record."""


class EvidenceSink(Protocol):
    def write(self, record: Mapping[str, Any], attachments: Sequence[tuple[str, Path]]) -> str:
        """Store `record` and its (name, report file) attachments; return the evidence id.

        Raises EvidenceWriteError when the service is unreachable or refuses the record.
        """
        ...


@dataclass(slots=True)
class GateOutcome:
    result: GateResult
    decision: dict[str, Any]
    evidence_id: str | None
    evidence_error: str | None = None


@dataclass(slots=True)
class RunOutcome:
    run_id: str
    commit: str
    gates: list[GateOutcome] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)
    evidence_id: str | None = None
    evidence_error: str | None = None

    @property
    def passed(self) -> bool:
        return self.decision.get("result") == "pass"


def ci_actor(env: Mapping[str, str] | None = None) -> str:
    """Who ran this: the CI's actor when in CI, else the local user."""
    environ = os.environ if env is None else env
    return environ.get("PIPELINE_ACTOR") or environ.get("GITHUB_ACTOR") or getpass.getuser()


def current_commit(root: Path) -> str:
    """HEAD of the tree under test; `GITHUB_SHA` when not a git checkout."""
    run = run_tool(["git", "rev-parse", "HEAD"], cwd=root, timeout_s=30)
    if run.exit_code == 0 and run.stdout.strip():
        return run.stdout.strip()
    return os.environ.get("GITHUB_SHA", "unknown")


def worktree_clean(root: Path) -> bool | None:
    """Whether the checkout has no uncommitted or untracked change; None outside git.

    Evidence names a commit; from a dirty tree it is not evidence about that commit, so the
    promotion policy only accepts runs from clean trees.
    """
    run = run_tool(["git", "status", "--porcelain"], cwd=root, timeout_s=60)
    if run.exit_code != 0:
        return None
    return run.stdout.strip() == ""


MAX_WAIVERS_IN_RECORD = 20


def gate_record(
    result: GateResult,
    decision: Mapping[str, Any],
    *,
    commit: str,
    actor: str,
    run_id: str,
    policy_digest: str,
    waivers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The evidence record for one gate (API.md `POST /v1/evidence` body).

    Every waiver in the gate's scope goes in whole (owner, approver, dates, reason, scope),
    used or ignored, so the record alone shows what was accepted and on whose word.
    """
    in_scope = [
        dict(w)
        for w in waivers
        if isinstance(w.get("scope"), dict) and w["scope"].get("gate") == result.gate
    ]
    inputs = {**result.inputs, "policy-bundle": policy_digest}
    artifacts = {**inputs, **result.outputs}
    return {
        "type": "ci.gate",
        "control_refs": list(result.controls),
        "result": decision["result"],
        "subject": {
            "commit": commit,
            # A missing input (no lock file, say) stays visible in details.inputs only.
            "artifacts": [
                {"name": name, "digest": digest}
                for name, digest in artifacts.items()
                if _DIGEST.match(digest)
            ],
        },
        "tool": {
            "name": result.tool.name,
            "version": result.tool.version,
            "config_digest": result.tool.config_digest,
        },
        "actor": actor,
        "started_at": rfc3339(result.started_at),
        "finished_at": rfc3339(result.finished_at),
        "details": {
            "gate": result.gate,
            "run_id": run_id,
            "duration_ms": result.duration_ms,
            "finding_counts": result.finding_counts,
            # The evidence service caps details at 16 KiB; the full facts are an attachment.
            "findings": [v[:MAX_FINDING_CHARS] for v in decision["violations"][:MAX_FINDINGS]],
            "findings_total": len(decision["violations"]),
            "waivers_used": decision["waivers_used"],
            "waivers_ignored": decision["waivers_ignored"],
            "waivers": in_scope[:MAX_WAIVERS_IN_RECORD],
            "warnings": [w[:MAX_FINDING_CHARS] for w in decision.get("warnings", [])],
            "inputs": inputs,
            "outputs": dict(result.outputs),
            "attachments": [
                {
                    "name": a.name,
                    "digest": a.digest,
                    "media_type": a.media_type,
                    "size_bytes": a.size_bytes,
                }
                for a in result.attachments
            ],
            **_headline(result.facts),
        },
    }


def _headline(facts: Mapping[str, Any]) -> dict[str, Any]:
    # Evidence records hold no floats (their JCS form is not stable), so percentages are text.
    headline: dict[str, Any] = {
        key: f"{facts[key]:.2f}"
        for key in ("coverage_percent",)
        if isinstance(facts.get(key), int | float)
    }
    # Which advisory data the dependency gate judged by (source, snapshot date, digest), and
    # which key signed the build gate's provenance.
    for key, name in (("advisory_db", "advisory_db"), ("signing", "provenance_key")):
        if isinstance(facts.get(key), dict):
            headline[name] = facts[key]
    return headline


def decide_gate(
    ws: Workspace, result: GateResult, waivers: list[dict[str, Any]], mode: str = "evidence"
) -> dict[str, Any]:
    document = {
        "gate": result.gate,
        "facts": result.facts,
        "waivers": waivers,
        "now": rfc3339(datetime.now(UTC)),
        "mode": mode,
    }
    try:
        decision = evaluate(ws.opa, ws.policy_dir, GATE_QUERY, document)
    except PolicyError as error:
        # No verdict is never a pass: record the gate as an error.
        return {
            "gate": result.gate,
            "result": "error",
            "violations": [str(error)],
            "waivers_used": [],
            "waivers_ignored": [],
            "warnings": [],
        }
    return dict(decision)


def _error_result(name: str, message: str) -> GateResult:
    moment = datetime.now(UTC)
    return GateResult(
        gate=name,
        controls=("SOC2:CC8.1",),
        tool=Tool(name, "unavailable", sha256_bytes(b"")),
        facts={"tool_error": message},
        finding_counts={},
        started_at=moment,
        finished_at=moment,
        duration_ms=0,
    )


def run_pipeline(
    ws: Workspace,
    gate_names: Sequence[str],
    *,
    sink: EvidenceSink | None,
    waivers_dir: Path,
    commit: str,
    actor: str,
    echo: bool = True,
    report_only: bool = False,
    scope: Mapping[str, Any] | None = None,
) -> RunOutcome:
    """Run `gate_names` in order over `ws` and write their evidence through `sink`.

    `report_only` (a pull request's run) writes nothing: it takes no sink, and the run
    policy then judges the gates alone. Such a run can back no promotion.
    """
    if report_only and sink is not None:
        raise ValueError("a report-only run writes no evidence: pass sink=None")
    mode = "report-only" if report_only else "evidence"
    run_id = "run_" + uuid.uuid4().hex
    outcome = RunOutcome(run_id=run_id, commit=commit)
    started_at = datetime.now(UTC)
    policy_digest = bundle_digest(ws.policy_dir)
    # Checked before the gates run: the gates themselves only write under reports/ (ignored).
    clean = worktree_clean(ws.root)
    try:
        waivers = load_waivers(waivers_dir)
        waiver_error = None
    except WaiverFileError as error:
        waivers, waiver_error = [], str(error)
    for name in gate_names:
        gate = GATES.get(name)
        try:
            with progress(name, echo=echo):
                result = gate(ws) if gate else _error_result(name, f"no gate named {name!r}")
        except Exception as error:  # noqa: BLE001 - a crashed gate is recorded as failed, not lost.
            result = _error_result(name, f"gate crashed: {error!r}")
        if waiver_error:
            result.facts["tool_error"] = f"waivers unreadable: {waiver_error}"
        decision = decide_gate(ws, result, waivers, mode)
        facts_file = ws.reports_dir / name / "facts.json"
        facts_file.parent.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps({"facts": result.facts, "decision": decision}))
        result.attachments += attach(ws, name, facts_file, "application/json")
        record = gate_record(
            result,
            decision,
            commit=commit,
            actor=actor,
            run_id=run_id,
            policy_digest=policy_digest,
            waivers=waivers,
        )
        gate_outcome = GateOutcome(result=result, decision=decision, evidence_id=None)
        if sink is None:
            gate_outcome.evidence_error = (
                "report-only" if report_only else "no evidence sink configured"
            )
        else:
            try:
                gate_outcome.evidence_id = sink.write(
                    record, [(a.name, a.path) for a in result.attachments]
                )
            except EvidenceWriteError as error:
                gate_outcome.evidence_error = str(error)
        outcome.gates.append(gate_outcome)
        if echo:
            print(
                f"gate {name:<13} {decision['result']:<5} {result.duration_ms / 1000:7.1f} s "
                f"evidence={gate_outcome.evidence_id or gate_outcome.evidence_error}"
            )
            for line in decision["violations"][:20]:
                print(f"    - {line}")
            for line in decision.get("warnings", [])[:20]:
                print(f"    ! {line}")
    summary = [
        {"gate": g.result.gate, "result": g.decision["result"], "evidence_id": g.evidence_id}
        for g in outcome.gates
    ]
    try:
        provisional = evaluate(ws.opa, ws.policy_dir, RUN_QUERY, {"gates": summary, "mode": mode})
    except PolicyError as error:
        provisional = {"result": "error", "violations": [str(error)]}
    run_record = {
        "type": "ci.run",
        "control_refs": list(RUN_CONTROLS),
        "result": provisional["result"],
        "subject": {
            "commit": commit,
            "artifacts": [
                {"name": name, "digest": digest}
                for name, digest in (
                    ("requirements.lock", sha256_file(ws.root / "requirements.lock")),
                    ("policy-bundle", policy_digest),
                )
                if _DIGEST.match(digest)
            ],
        },
        "tool": {"name": "moneypath-pipeline", "version": "1", "config_digest": policy_digest},
        "actor": actor,
        "started_at": rfc3339(started_at),
        "finished_at": rfc3339(datetime.now(UTC)),
        "details": {
            "run_id": run_id,
            "mode": mode,
            "scope": dict(scope or {"default": False, "narrowed_by": ["not stated"]}),
            "worktree_clean": clean,
            "gates": summary,
            "gate_records": {g["gate"]: g["evidence_id"] for g in summary if g["evidence_id"]},
            "findings": provisional["violations"],
            "waivers_used": sorted({w for g in outcome.gates for w in g.decision["waivers_used"]}),
        },
    }
    if sink is None:
        outcome.evidence_error = "report-only" if report_only else "no evidence sink configured"
    else:
        try:
            outcome.evidence_id = sink.write(run_record, [])
        except EvidenceWriteError as error:
            outcome.evidence_error = str(error)
    try:
        outcome.decision = evaluate(
            ws.opa,
            ws.policy_dir,
            RUN_QUERY,
            {"gates": summary, "run_evidence_id": outcome.evidence_id, "mode": mode},
        )
    except PolicyError as error:
        outcome.decision = {"result": "error", "violations": [str(error)]}
    ws.reports_dir.mkdir(parents=True, exist_ok=True)
    (ws.reports_dir / "run.json").write_text(
        json.dumps(
            {
                "run": run_record,
                "decision": outcome.decision,
                "run_evidence_id": outcome.evidence_id,
            },
            indent=2,
        )
    )
    if echo:
        print(
            f"run {run_id} {outcome.decision['result']} evidence="
            f"{outcome.evidence_id or outcome.evidence_error}"
        )
        for line in outcome.decision["violations"][:40]:
            print(f"    - {line}")
        rows = [
            (
                g.result.gate,
                str(g.decision["result"]),
                g.result.finding_counts,
                g.result.duration_ms,
                g.evidence_id or g.evidence_error,
            )
            for g in outcome.gates
        ]
        run_line = (
            f"moneypath pipeline {mode} run {run_id} for {commit[:12]}: "
            f"{outcome.decision['result']} (run evidence {outcome.evidence_id or '-'})"
        )
        publish(table(rows, run_line))
    return outcome
