"""`moneypath up` brings the whole stack to ready, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from app.entrypoints.launchers.processes import free_port


def test_up_reaches_ready_and_ctrl_c_stops_every_child(tmp_path: Path, repo_root: Path) -> None:
    api_port = free_port()
    sim_port = free_port()
    worker_metrics_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "PG_PORT": str(free_port()),
        "VAULT_PORT": str(free_port()),
        "OPA_PORT": str(free_port()),
        "API_PORT": str(api_port),
        "EVIDENCE_PORT": str(free_port()),
        "SIM_PORT": str(sim_port),
        "WORKER_METRICS_PORT": str(worker_metrics_port),
    }
    output = (tmp_path / "up.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.entrypoints.cli", "up", "--data-dir", str(tmp_path)],
        cwd=repo_root,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready is not None, (tmp_path / "up.out").read_text()
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"db": "ok", "opa": "ok", "vault": "ok"}
        sim = httpx.get(f"http://127.0.0.1:{sim_port}/_sim/health", timeout=2)
        assert sim.status_code == 200
        # The worker starts last; once `up` says so, Prometheus can scrape what it counts.
        worker_metrics = f"http://127.0.0.1:{worker_metrics_port}/metrics"
        while time.monotonic() < deadline and process.poll() is None:
            if "moneypath is up" in (tmp_path / "up.out").read_text():
                break
            time.sleep(0.5)
        scraped = httpx.get(worker_metrics, timeout=5)
        assert scraped.status_code == 200
        assert "moneypath_webhook_dead_letters_waiting 0.0" in scraped.text
        assert "moneypath_outbox_depth" in scraped.text
        assert f"worker-metrics {worker_metrics}" in (tmp_path / "up.out").read_text()
        descendants = psutil.Process(process.pid).children(recursive=True)
        names = {child.name() for child in descendants}
        assert {"postgres", "opa"} <= names
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        output.close()
    time.sleep(0.5)
    alive = [child for child in descendants if child.is_running() and child.status() != "zombie"]
    assert alive == [], [child.name() for child in alive]
