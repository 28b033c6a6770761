"""`make loadtest`: run the Locust money-path mix headless against a stack, held to SLOs.

    .venv/bin/python loadtests/run.py [--users 8] [--spawn-rate 4] [--run-time 30s]
                                      [--slo loadtests/slo.yml] [--report-dir reports/loadtest]

Without MP_API_URL it brings up its own stack (PostgreSQL, OpenBao, OPA, the API and the
evidence service on free ports in a temporary directory), registers a load-test client
and an evidence writer, and tears it all down afterwards. With MP_API_URL it uses that
API and the credentials in MP_CREDENTIALS (and MP_EVIDENCE_URL/MP_EVIDENCE_CREDENTIALS
for the evidence record, if given).

Keeps Locust's HTML report and a JSON summary in --report-dir; exits with Locust's exit
code, which the locustfile's `quitting` hook sets to 1 when an SLO is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from app.entrypoints.devstack import Ports, Stack  # noqa: E402
from app.entrypoints.drills.harness import create_client  # noqa: E402
from app.entrypoints.operator_call import write_credentials  # noqa: E402
from app.platform.client_credentials import private_pem  # noqa: E402

LOCUST_TIMEOUT_MARGIN_S = 120


def _credentials(stack: Stack, folder: Path, name: str, scopes: list[str]) -> Path:
    made = create_client(stack, name, scopes)
    key = folder / f"{name}.pem"
    key.touch(mode=0o600)
    key.write_bytes(private_pem(made.private_key))
    out = folder / f"{name}.json"
    write_credentials(
        out,
        api_url=stack.api_url,
        client_id=made.client_id,
        client_secret=made.client_secret,
        key_id=made.key_id,
        key_path=key,
    )
    return out


@contextlib.contextmanager
def _target(report_dir: Path) -> Iterator[dict[str, str]]:
    """The environment that points the locustfile at an API: given, or a stack of our own."""
    if os.environ.get("MP_API_URL"):
        if not os.environ.get("MP_CREDENTIALS"):
            raise SystemExit("MP_API_URL is set: also set MP_CREDENTIALS (clients create --out)")
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="loadtest-") as scratch:
        stack = Stack(root=Path(scratch), ports=Ports.free(), watch_policies=False)
        with stack.running(apps=True):
            secrets_dir = Path(scratch) / "credentials"
            secrets_dir.mkdir(mode=0o700)
            scopes = ["ledger:write", "ledger:read", "kyc:write"]
            yield {
                "MP_API_URL": stack.api_url,
                "MP_CREDENTIALS": str(_credentials(stack, secrets_dir, "loadtest", scopes)),
                "MP_EVIDENCE_URL": stack.evidence_url,
                "MP_EVIDENCE_CREDENTIALS": str(
                    _credentials(stack, secrets_dir, "loadtest-evidence", ["evidence:write"])
                ),
            }


def _seconds(run_time: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(run_time[:-1]) * units[run_time[-1]] if run_time[-1] in units else int(run_time)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make loadtest")
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOADTEST_USERS", 8)))
    parser.add_argument("--spawn-rate", type=float, default=4.0)
    parser.add_argument("--run-time", default=os.environ.get("LOADTEST_TIME", "30s"))
    parser.add_argument("--slo", default=os.environ.get("MP_SLO_FILE", str(HERE / "slo.yml")))
    parser.add_argument("--report-dir", default=str(REPO / "reports" / "loadtest"))
    args = parser.parse_args(argv)
    if not 1 <= args.users <= 500:
        parser.error("--users must lie in [1, 500]")
    report_dir = Path(args.report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    html = report_dir / "locust.html"
    with _target(report_dir) as extra_env:
        env = {
            **os.environ,
            **extra_env,
            "MP_SLO_FILE": str(Path(args.slo).resolve()),
            "MP_SUMMARY_JSON": str(report_dir / "summary.json"),
            "MP_REPORT_HTML": str(html),
            "PYTHONPATH": str(REPO),
        }
        command = [
            sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"),
            "--headless", "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
            "--run-time", args.run_time, "--stop-timeout", "5", "--only-summary",
            "--html", str(html), "--loglevel", os.environ.get("LOADTEST_LOGLEVEL", "WARNING"),
        ]  # fmt: skip
        result = subprocess.run(
            command,
            env=env,
            cwd=REPO,
            timeout=_seconds(args.run_time) + LOCUST_TIMEOUT_MARGIN_S,
            check=False,
        )
    print(f"report: {html}\nsummary: {report_dir / 'summary.json'}", flush=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
