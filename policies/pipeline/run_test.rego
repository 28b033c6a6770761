package moneypath.pipeline.run_test

import rego.v1

import data.moneypath.pipeline.run

gate(name, result, id) := {"gate": name, "result": result, "evidence_id": id}

test_run_passes_when_every_gate_passed_with_evidence if {
	run.decision.result == "pass" with input as {"gates": [gate("ruff", "pass", "evd_1"), gate("opa", "pass", "evd_2")]}
}

test_run_fails_when_a_gate_failed if {
	d := run.decision with input as {"gates": [gate("ruff", "pass", "evd_1"), gate("opa", "fail", "evd_2")]}
	d.violations == ["gate opa: fail"]
}

test_run_fails_when_evidence_is_missing if {
	d := run.decision with input as {"gates": [gate("ruff", "pass", null)]}
	d.result == "fail"
	d.violations == ["gate ruff: no evidence record was written"]
}

test_run_fails_when_the_run_record_was_not_written if {
	d := run.decision with input as {"gates": [gate("ruff", "pass", "evd_1")], "run_evidence_id": null}
	d.violations == ["the run record was not written to the evidence service"]
	run.decision.result == "pass" with input as {"gates": [gate("ruff", "pass", "evd_1")], "run_evidence_id": "evd_9"}
}

test_run_fails_when_no_gate_ran_or_a_gate_ran_twice if {
	run.decision.result == "fail" with input as {"gates": []}
	d := run.decision with input as {"gates": [gate("ruff", "pass", "evd_1"), gate("ruff", "pass", "evd_2")]}
	d.violations == ["gate ruff ran 2 times"]
}

test_report_only_run_passes_without_evidence_when_every_gate_passed if {
	d := run.decision with input as {"mode": "report-only", "gates": [gate("ruff", "pass", null)], "run_evidence_id": null}
	d.result == "pass"
}

test_report_only_run_fails_when_a_gate_failed_or_evidence_was_written if {
	d := run.decision with input as {"mode": "report-only", "gates": [gate("ruff", "fail", null), gate("opa", "pass", "evd_1")]}
	d.violations == ["gate opa: a report-only run wrote evidence", "gate ruff: fail"]
}
