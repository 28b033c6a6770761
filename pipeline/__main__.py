"""`python -m pipeline run|promote|bootstrap`: the gated CI, the same on a laptop and in CI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.bootstrap import bootstrap as install_tools
from pipeline.bundle import BundleError
from pipeline.bundle import export as export_bundle
from pipeline.bundle import verify as verify_bundle
from pipeline.gates import GATES
from pipeline.runner import ci_actor, current_commit, run_pipeline
from pipeline.workspace import ADVISORY_SOURCES, HOME, Workspace


def _gate_list(values: Sequence[str] | None) -> list[str]:
    if not values:
        return list(GATES)
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names


# Flags that narrow what a run looks at, or let the caller vouch for what it cannot check:
# a run given any of them can back no promotion.
NARROWING_FLAGS = ("packages", "tests", "waivers", "advisory_db", "policy_dir", "commit")


def _scope(args: argparse.Namespace) -> dict[str, object]:
    narrowed = [f"--{name.replace('_', '-')}" for name in NARROWING_FLAGS if getattr(args, name)]
    if args.gates and sorted(_gate_list(args.gates)) != sorted(GATES):
        narrowed.append("--gates")
    return {"default": not narrowed, "narrowed_by": narrowed}


def _run(args: argparse.Namespace) -> int:
    from pipeline.evidence_client import EvidenceClient, sink_from_env

    ws = Workspace.create(
        Path(args.root),
        reports_dir=Path(args.reports) if args.reports else None,
        advisory_db=Path(args.advisory_db).resolve() if args.advisory_db else None,
        advisory_source=args.advisory_source,
        pytest_reports=Path(args.pytest_reports) if args.pytest_reports else None,
        source_packages=args.packages,
        test_paths=args.tests,
        policy_dir=Path(args.policy_dir).resolve() if args.policy_dir else None,
    )
    report_only = args.report_only or args.no_evidence
    sink = None if report_only else sink_from_env(args.evidence_url)
    outcome = run_pipeline(
        ws,
        _gate_list(args.gates),
        sink=sink,
        waivers_dir=Path(args.waivers) if args.waivers else ws.root / "pipeline" / "waivers",
        commit=args.commit or current_commit(ws.root),
        actor=ci_actor(),
        report_only=args.report_only,
        scope=_scope(args),
    )
    exported = True
    if isinstance(sink, EvidenceClient):
        # The stack that holds the evidence may not outlive the run: keep a verifiable copy.
        try:
            path = export_bundle(sink, sink.appended, ws.reports_dir / "evidence-bundle")
            print(f"evidence bundle: {path} (check it with python -m pipeline verify-bundle)")
        except BundleError as error:
            print(f"evidence bundle not exported: {error}", file=sys.stderr)
            exported = False
    return 0 if outcome.passed and exported else 1


def _verify_bundle(args: argparse.Namespace) -> int:
    problems = verify_bundle(Path(args.folder), Path(args.key) if args.key else None)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: {args.folder} verifies offline (records, proofs, checkpoint, attachments)")
    return 1 if problems else 0


def _promote(args: argparse.Namespace) -> int:
    import os

    from pipeline.promotion import promote
    from pipeline.runner import worktree_clean

    root = Path(args.root)
    head = current_commit(root)
    decision = promote(
        evidence_url=args.evidence_url,
        commit=args.commit or head,
        head_commit=head,
        tree_clean=worktree_clean(root),
        artifact_digest=args.artifact_digest,
        environment=args.environment,
        actor=ci_actor(),
        pipeline_client_id=os.environ.get("PIPELINE_CLIENT_ID", ""),
        policy_dir=HOME / "policies" / "pipeline",
        opa=HOME / ".tools" / "bin" / "opa",
    )
    print(
        f"promotion {'allowed' if decision['allow'] else 'refused'}: "
        f"evidence={decision.get('evidence_id')}"
    )
    for reason in decision["reasons"]:
        print(f"    - {reason}")
    return 0 if decision["allow"] and decision.get("evidence_id") else 1


def _verify_promotion(args: argparse.Namespace) -> int:
    import json

    from pipeline.evidence_client import EvidenceClient, client_from_env
    from pipeline.promotion import verify_promotion

    client = client_from_env(args.evidence_url)
    if not isinstance(client, EvidenceClient):
        print("verify-promotion: no: evidence credentials not configured")
        return 1
    answer = verify_promotion(client, args.digest, args.environment)
    print(f"verify-promotion {args.digest}: {'yes' if answer['allow'] else 'no'}")
    for reason in answer["reasons"]:
        print(f"    - {reason}")
    print(json.dumps({"proofs": answer["proofs"]}, indent=1))
    return 0 if answer["allow"] else 1


def _schema_snapshot(args: argparse.Namespace) -> int:
    """Write the schema the tree's migrations produce as the migrations gate's expectation."""
    from pipeline.gates.migrations import run_probe, settings

    ws = Workspace.create(Path(args.root))
    config = settings(ws)
    upgrades = {str(k): str(v) for k, v in dict(config.get("upgrade", {})).items()}
    if not upgrades:
        print("pyproject.toml declares no [tool.pipeline.migrations] upgrade", file=sys.stderr)
        return 1
    run = run_probe(ws, upgrades)
    if run.exit_code != 0:
        print(run.stderr[-4000:], file=sys.stderr)
        return 1
    target = ws.root / str(config.get("expected", "pipeline/expected-schema.json"))
    target.write_text(run.stdout)
    print(f"wrote {target}")
    return 0


def _secrets_baseline(args: argparse.Namespace) -> int:
    """Rescan the tree into .secrets.baseline, keeping the reviews already recorded there."""
    from pipeline.gates.secret_scan import BASELINE, scan_argv, tree_files
    from pipeline.workspace import run_tool

    ws = Workspace.create(Path(args.root))
    baseline = ws.root / BASELINE
    extra = ["--baseline", str(baseline)] if baseline.is_file() else []
    run = run_tool(scan_argv(ws, tree_files(ws.root), *extra), cwd=ws.root, timeout_s=900)
    if run.exit_code != 0:
        print(run.stderr[-4000:], file=sys.stderr)
        return 1
    if not extra:
        baseline.write_text(run.stdout)
    print(f"wrote {baseline}: review each new entry, then commit it")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gates and write their evidence")
    run.add_argument("--gates", nargs="+", help=f"subset of: {', '.join(GATES)}")
    run.add_argument("--evidence-url", help="evidence service base URL (default $EVIDENCE_URL)")
    run.add_argument(
        "--no-evidence", action="store_true", help="write no evidence (the run then cannot pass)"
    )
    run.add_argument(
        "--report-only",
        action="store_true",
        help="a pull request's run: no credentials, no evidence; passes on the gates alone "
        "and can back no promotion",
    )
    run.add_argument(
        "--policy-dir",
        help="the deciding gate policy (default: policies/pipeline of this checkout); CI on a "
        "pull request points it at the protected base branch's copy",
    )
    run.add_argument("--root", default=".", help="tree under test (default: .)")
    run.add_argument("--reports", help="report directory (default: reports/pipeline)")
    run.add_argument(
        "--advisory-source",
        choices=ADVISORY_SOURCES,
        default="snapshot",
        help="snapshot: offline, the PyPA snapshot shipped in pipeline/advisory-db (default); "
        "online: pip-audit's own OSV service",
    )
    run.add_argument(
        "--advisory-db",
        help="another OSV vulns/ tree for the snapshot source "
        "(default: .tools/advisory-db/vulns, unpacked by make install)",
    )
    run.add_argument("--pytest-reports", help="ingest junit.xml + coverage.json from here")
    run.add_argument(
        "--packages",
        nargs="+",
        help="packages to scan (default: app evidence pipeline, those present)",
    )
    run.add_argument(
        "--tests",
        nargs="+",
        help="test paths (default: tests/unit tests/integration tests/e2e, those present)",
    )
    run.add_argument("--waivers", help="waiver directory (default pipeline/waivers)")
    run.add_argument("--commit", help="commit SHA (default: git HEAD)")
    run.set_defaults(handler=_run)

    promote = commands.add_parser("promote", help="record a promotion backed by evidence")
    promote.add_argument(
        "--artifact-digest", required=True, help="sha256:<hex> the build gate recorded"
    )
    promote.add_argument("--environment", required=True, help="staging or production")
    promote.add_argument("--evidence-url", help="evidence service base URL")
    promote.add_argument("--commit", help="commit SHA (default: git HEAD)")
    promote.add_argument("--root", default=".")
    promote.set_defaults(handler=_promote)

    verify = commands.add_parser(
        "verify-promotion", help="may this artifact digest be deployed? yes/no from evidence"
    )
    verify.add_argument("digest", help="sha256:<hex> of the artifact about to be deployed")
    verify.add_argument("--environment", help="only promotions to this environment count")
    verify.add_argument("--evidence-url", help="evidence service base URL")
    verify.set_defaults(handler=_verify_promotion)

    bootstrap = commands.add_parser(
        "bootstrap", help="unpack the advisory snapshot, install checkov (make install runs it)"
    )
    bootstrap.set_defaults(handler=lambda _args: install_tools(HOME))

    schema = commands.add_parser(
        "schema-snapshot", help="write the schema the migrations produce (the migrations gate)"
    )
    schema.add_argument("--root", default=".")
    schema.set_defaults(handler=_schema_snapshot)

    baseline = commands.add_parser(
        "secrets-baseline", help="rescan into .secrets.baseline (the secrets gate)"
    )
    baseline.add_argument("--root", default=".")
    baseline.set_defaults(handler=_secrets_baseline)

    check = commands.add_parser(
        "verify-bundle", help="check a run's evidence bundle offline (reports/.../evidence-bundle)"
    )
    check.add_argument("folder")
    check.add_argument("--key", help="pin the checkpoint key (PEM or JSON from the service)")
    check.set_defaults(handler=_verify_bundle)

    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
