"""The infrastructure drills: a dependency stopped (Vault, OPA) or PostgreSQL killed."""

from __future__ import annotations

import time

from app.entrypoints.devstack import Stack
from app.entrypoints.drills.harness import (
    Traffic,
    check_ledger,
    metric_value,
    open_account,
    poll,
    readyz,
    signed,
)
from app.entrypoints.drills.report import DrillReport
from app.platform.client_credentials import ClientCredentials

DETECTION_DEADLINE_S = 15.0
RECOVERY_DEADLINE_S = 60.0
# How long the database stays down: long enough for every writer to hit the outage.
DB_OUTAGE_S = 3.0


def dependency_down(stack: Stack, report: DrillReport, service: str, check_name: str) -> None:
    """Stop one backing service, expect /readyz to name it, restart, expect recovery."""
    if readyz(stack).status_code != 200:
        report.note("stack not ready before the fault; aborting")
        return
    report.note(f"injecting fault: stopping {service}")
    stack.stop(service)
    report.detected_after_s = poll(
        lambda: readyz(stack).status_code == 503 and check_name in readyz(stack).json()["down"],
        DETECTION_DEADLINE_S,
    )
    report.note(f"detected by /readyz after {report.detected_after_s} s")
    report.note(f"recovering: starting {service} again")
    {"openbao": stack.start_vault, "opa": stack.start_opa}[service]()
    if service == "openbao":
        # Dev OpenBao is in-memory: a restart loses mounts and secrets, so re-run the
        # bootstrap exactly as a fresh `moneypath up` would.
        stack.bootstrap()
    report.recovered_after_s = poll(lambda: readyz(stack).status_code == 200, DETECTION_DEADLINE_S)
    report.note(f"recovered after {report.recovered_after_s} s")
    report.check("detected_by_readyz", report.detected_after_s is not None)
    report.check("recovered", report.recovered_after_s is not None)


def db_restart(stack: Stack, report: DrillReport, operator: ClientCredentials) -> None:
    """Kill PostgreSQL (-9) under four writers, start it again, check nothing was lost.

    Needs a stack whose PostgreSQL this process can restart: the embedded server of a
    drill stack (or of `moneypath up` run by the drill itself). The API is not restarted.
    """
    client = signed(stack, operator)
    funding = open_account(client, "debit", unlimited=True)
    targets = [open_account(client, "credit") for _ in range(4)]
    traffic = Traffic(client, funding, targets)
    unavailable_before = metric_value(
        stack, "moneypath_dependency_unavailable_total", {"dependency": "db"}
    )
    report.note("traffic: 4 writers moving money between the drill's accounts")
    traffic.start()
    time.sleep(1.0)
    report.note("injecting fault: SIGKILL to PostgreSQL")
    stack.kill("postgres")
    report.detected_after_s = poll(
        lambda: readyz(stack).status_code == 503 and readyz(stack).json()["down"] == ["db"],
        DETECTION_DEADLINE_S,
    )
    report.note(f"/readyz names db after {report.detected_after_s} s")
    time.sleep(max(0.0, DB_OUTAGE_S - (report.detected_after_s or 0.0)))
    report.note("recovering: starting PostgreSQL on the same data directory")
    stack.start_postgres()
    report.recovered_after_s = poll(lambda: readyz(stack).status_code == 200, RECOVERY_DEADLINE_S)
    report.note(f"/readyz ok again after {report.recovered_after_s} s")
    time.sleep(1.0)
    traffic.stop()
    still_open = traffic.settle()
    report.note(f"traffic stopped; {len(traffic.transfers)} transfers, answers {traffic.answers}")
    unavailable = (
        metric_value(stack, "moneypath_dependency_unavailable_total", {"dependency": "db"})
        - unavailable_before
    )
    report.figures["answers_500"] = traffic.answers.get(500, 0)
    report.figures["answers_503"] = traffic.answers.get(503, 0)
    report.figures["metric_db_unavailable"] = int(unavailable)
    report.check("detected_by_readyz", report.detected_after_s is not None)
    report.check("detected_by_metric", unavailable > 0, f"{int(unavailable)} requests counted")
    report.check(
        "outage_answered_503_not_500",
        traffic.answers.get(500, 0) == 0
        and traffic.problem_codes.get("service_unavailable", 0) > 0,
        f"codes {traffic.problem_codes}",
    )
    report.check("every_transfer_settled", still_open == 0, f"{still_open} still open")
    check_ledger(report, client, traffic)
    client.close()
