"""`python -m pipeline run|promote|bootstrap`: the gated CI, the same on a laptop and in CI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.bootstrap import bootstrap as install_tools
from pipeline.gates import GATES
from pipeline.runner import ci_actor, current_commit, run_pipeline
from pipeline.workspace import ADVISORY_SOURCES, HOME, Workspace


def _gate_list(values: Sequence[str] | None) -> list[str]:
    if not values:
        return list(GATES)
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names


def _run(args: argparse.Namespace) -> int:
    from pipeline.evidence_client import sink_from_env

    ws = Workspace.create(
        Path(args.root),
        reports_dir=Path(args.reports) if args.reports else None,
        advisory_db=Path(args.advisory_db).resolve() if args.advisory_db else None,
        advisory_source=args.advisory_source,
        pytest_reports=Path(args.pytest_reports) if args.pytest_reports else None,
        source_packages=args.packages,
        test_paths=args.tests,
    )
    sink = None if args.no_evidence else sink_from_env(args.evidence_url)
    outcome = run_pipeline(
        ws,
        _gate_list(args.gates),
        sink=sink,
        waivers_dir=Path(args.waivers) if args.waivers else ws.root / "pipeline" / "waivers",
        commit=args.commit or current_commit(ws.root),
        actor=ci_actor(),
    )
    return 0 if outcome.passed else 1


def _promote(args: argparse.Namespace) -> int:
    from pipeline.promotion import promote

    decision = promote(
        evidence_url=args.evidence_url,
        commit=args.commit or current_commit(Path(args.root)),
        artifact_digest=args.artifact_digest,
        environment=args.environment,
        actor=ci_actor(),
        policy_dir=HOME / "policies" / "pipeline",
        opa=HOME / ".tools" / "bin" / "opa",
        registered_submitters={client_id: ["ci.**"] for client_id in args.trusted_submitter or ()},
    )
    print(
        f"promotion {'allowed' if decision['allow'] else 'refused'}: "
        f"evidence={decision.get('evidence_id')}"
    )
    for reason in decision["reasons"]:
        print(f"    - {reason}")
    return 0 if decision["allow"] and decision.get("evidence_id") else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the gates and write their evidence")
    run.add_argument("--gates", nargs="+", help=f"subset of: {', '.join(GATES)}")
    run.add_argument("--evidence-url", help="evidence service base URL (default $EVIDENCE_URL)")
    run.add_argument(
        "--no-evidence", action="store_true", help="write no evidence (the run then cannot pass)"
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
    promote.add_argument("--artifact-digest", required=True, help="sha256:<hex> of the image")
    promote.add_argument("--environment", required=True, help="staging or production")
    promote.add_argument("--evidence-url", help="evidence service base URL")
    promote.add_argument("--commit", help="commit SHA (default: git HEAD)")
    promote.add_argument("--root", default=".")
    promote.add_argument(
        "--trusted-submitter",
        action="append",
        metavar="CLIENT_ID",
        help="also trust this client's ci.* records (a test or CI stack's own pipeline "
        "client; production trusts only policies/trust/evidence_submitters.json)",
    )
    promote.set_defaults(handler=_promote)

    bootstrap = commands.add_parser(
        "bootstrap", help="unpack the advisory snapshot, install checkov (make install runs it)"
    )
    bootstrap.set_defaults(handler=lambda _args: install_tools(HOME))

    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
