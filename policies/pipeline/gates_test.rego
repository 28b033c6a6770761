package moneypath.pipeline.gates_test

import rego.v1

import data.moneypath.pipeline.gates

now := "2026-11-28T12:00:00Z"

approved_waiver(scope, expires) := {
	"id": "WVR-1",
	"owner": "alice",
	"approved_by": "bob",
	"reason": "fix scheduled",
	"expires": expires,
	"scope": scope,
}

decide(gate, facts, waivers) := d if {
	d := gates.decision with input as {"gate": gate, "facts": facts, "waivers": waivers, "now": now}
}

jinja_facts := {
	"locked": [{"name": "jinja2", "version": "2.10"}],
	"dependencies": [{"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217", "aliases": ["CVE-2019-10906", "GHSA-462w-v97r-4m45"]}]}],
	"skipped": [],
	"unchecked": [],
}

clean_audit := {
	"locked": [{"name": "jinja2", "version": "3.1.6"}],
	"dependencies": [{"name": "jinja2", "version": "3.1.6", "vulns": []}],
	"skipped": [],
	"unchecked": [],
}

test_pip_audit_fails_on_a_known_vulnerability_when_no_waiver if {
	d := decide("pip-audit", jinja_facts, [])
	d.result == "fail"
	some v in d.violations
	contains(v, "PYSEC-2019-217")
	contains(v, "CVE-2019-10906")
}

test_pip_audit_passes_when_clean if {
	decide("pip-audit", clean_audit, []).result == "pass"
}

test_pip_audit_fails_when_the_unpacked_snapshot_was_altered if {
	altered := object.union(clean_audit, {"advisory_db": {"source": "snapshot", "tree_mismatch": "files differ"}})
	d := decide("pip-audit", altered, [])
	d.result == "fail"
	"files differ" in d.violations
}

test_pip_audit_passes_when_an_approved_unexpired_waiver_covers_an_alias if {
	w := approved_waiver({"gate": "pip-audit", "finding": "CVE-2019-10906", "package": "jinja2"}, "2027-01-01T00:00:00Z")
	d := decide("pip-audit", jinja_facts, [w])
	d.result == "pass"
	d.waivers_used == ["WVR-1"]
}

test_pip_audit_fails_when_the_waiver_expired if {
	w := approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2026-11-01T00:00:00Z")
	d := decide("pip-audit", jinja_facts, [w])
	d.result == "fail"
	d.waivers_used == []
	d.waivers_ignored == ["WVR-1"]
}

test_pip_audit_fails_when_the_waiver_is_self_approved if {
	w := object.union(approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2027-01-01T00:00:00Z"), {"approved_by": "alice"})
	decide("pip-audit", jinja_facts, [w]).result == "fail"
}

test_pip_audit_fails_when_the_waiver_names_another_package if {
	w := approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217", "package": "flask"}, "2027-01-01T00:00:00Z")
	decide("pip-audit", jinja_facts, [w]).result == "fail"
}

test_pip_audit_fails_when_the_expiry_is_unparsable if {
	w := approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "next year")
	decide("pip-audit", jinja_facts, [w]).result == "fail"
}

test_pip_audit_fails_when_a_package_could_not_be_checked if {
	facts := object.union(clean_audit, {"unchecked": [{"name": "weird", "reason": "bad version"}]})
	d := decide("pip-audit", facts, [])
	d.result == "fail"
	some v in d.violations
	contains(v, "could not check weird")
}

test_pip_audit_fails_when_a_locked_pin_was_not_audited if {
	facts := object.union(clean_audit, {"locked": [{"name": "jinja2", "version": "3.1.6"}, {"name": "x", "version": "1"}]})
	d := decide("pip-audit", facts, [])
	"could not check x==1: not audited" in d.violations
}

test_pip_audit_fails_when_nothing_is_locked if {
	decide("pip-audit", {"locked": [], "dependencies": [], "skipped": [], "unchecked": []}, []).result == "fail"
}

test_any_gate_fails_when_its_tool_errored if {
	d := decide("sbom", {"tool_error": "boom", "bom_format": "CycloneDX", "component_count": 3, "locked_count": 3, "exit_code": 0}, [])
	d.result == "fail"
	"tool could not run: boom" in d.violations
}

test_unknown_gate_fails if {
	decide("nope", {}, []).result == "fail"
}

test_bandit_fails_on_high_and_passes_on_medium if {
	high := {"test_id": "B602", "severity": "HIGH", "file": "app/x.py", "line": 3, "text": "shell"}
	medium := object.union(high, {"severity": "MEDIUM"})
	decide("bandit", {"issues": [high], "scan_errors": []}, []).result == "fail"
	decide("bandit", {"issues": [medium], "scan_errors": []}, []).result == "pass"
}

test_bandit_high_is_waivable_by_path if {
	high := {"test_id": "B602", "severity": "HIGH", "file": "app/x.py", "line": 3, "text": "shell"}
	w := approved_waiver({"gate": "bandit", "finding": "B602", "path": "app/x.py"}, "2027-01-01T00:00:00Z")
	d := decide("bandit", {"issues": [high], "scan_errors": []}, [w])
	d.result == "pass"
	d.waivers_used == ["WVR-1"]
}

test_bandit_fails_when_a_file_could_not_be_scanned if {
	decide("bandit", {"issues": [], "scan_errors": [{"filename": "a.py"}]}, []).result == "fail"
}

checkov_clean := {"frameworks": {"dockerfile": 87, "github_actions": 28}, "failed": [], "parsing_errors": []}

test_checkov_passes_when_both_frameworks_scanned_clean if {
	decide("checkov", checkov_clean, []).result == "pass"
}

test_checkov_fails_on_a_failed_check_unless_waived if {
	failed := object.union(checkov_clean, {"failed": [{"check_id": "CKV_DOCKER_3", "file": "/Dockerfile", "resource": "Dockerfile.", "name": "user"}]})
	decide("checkov", failed, []).result == "fail"
	w := approved_waiver({"gate": "checkov", "finding": "CKV_DOCKER_3"}, "2027-01-01T00:00:00Z")
	decide("checkov", failed, [w]).waivers_used == ["WVR-1"]
}

test_checkov_fails_when_a_framework_scanned_nothing if {
	decide("checkov", {"frameworks": {"github_actions": 28}, "failed": [], "parsing_errors": []}, []).result == "fail"
}

test_checkov_fails_on_parsing_errors if {
	decide("checkov", object.union(checkov_clean, {"parsing_errors": ["Dockerfile"]}), []).result == "fail"
}

opa_clean := {
	"fmt": {"exit_code": 0, "unformatted": []},
	"check": {"exit_code": 0, "errors": ""},
	"test": {"exit_code": 0, "total": 10, "passed": 10, "failed": []},
	"coverage_percent": 90.5,
}

test_opa_passes_when_clean if {
	decide("opa", opa_clean, []).result == "pass"
}

test_opa_fails_on_a_failing_test if {
	facts := object.union(opa_clean, {"test": {"exit_code": 2, "total": 10, "passed": 9, "failed": [{"package": "p", "name": "test_x", "error": null}]}})
	d := decide("opa", facts, [])
	d.result == "fail"
	some v in d.violations
	contains(v, "test_x")
}

test_opa_fails_on_exit_code_without_parsed_failures if {
	facts := object.union(opa_clean, {"test": {"exit_code": 1, "total": 1, "passed": 1, "failed": []}})
	decide("opa", facts, []).result == "fail"
}

test_opa_fails_on_low_coverage_fmt_and_check if {
	decide("opa", object.union(opa_clean, {"coverage_percent": 40}), []).result == "fail"
	decide("opa", object.union(opa_clean, {"coverage_percent": null}), []).result == "fail"
	decide("opa", object.union(opa_clean, {"fmt": {"exit_code": 1, "unformatted": ["a.rego"]}}), []).result == "fail"
	decide("opa", object.union(opa_clean, {"check": {"exit_code": 1, "errors": "x"}}), []).result == "fail"
	decide("opa", object.union(opa_clean, {"test": {"exit_code": 0, "total": 0, "passed": 0, "failed": []}}), []).result == "fail"
}

pytest_clean := {"source": "executed", "exit_code": 0, "tests": 5, "failures": 0, "errors": 0, "skipped": 0, "failed_cases": [], "coverage_percent": 95.0}

test_pytest_passes_when_green_and_covered if {
	decide("pytest", pytest_clean, []).result == "pass"
}

test_pytest_fails_on_a_test_failure if {
	facts := object.union(pytest_clean, {"exit_code": 1, "failures": 1, "failed_cases": ["tests.t::test_a"]})
	d := decide("pytest", facts, [])
	"test failed: tests.t::test_a" in d.violations
}

test_pytest_fails_on_low_coverage_no_tests_or_uncounted_errors if {
	decide("pytest", object.union(pytest_clean, {"coverage_percent": 79.99}), []).result == "fail"
	decide("pytest", object.union(pytest_clean, {"tests": 0}), []).result == "fail"
	decide("pytest", object.union(pytest_clean, {"source": "ingested", "exit_code": null, "errors": 2}), []).result == "fail"
}

test_lint_gates if {
	decide("ruff", {"violation_count": 0, "unformatted": [], "format_exit_code": 0}, []).result == "pass"
	decide("ruff", {"violation_count": 2, "unformatted": [], "format_exit_code": 1}, []).result == "fail"
	decide("ruff", {"violation_count": 0, "unformatted": ["a.py"], "format_exit_code": 1}, []).result == "fail"
	decide("ruff", {"violation_count": 0, "unformatted": [], "format_exit_code": 2}, []).result == "fail"
	decide("mypy", {"error_count": 0, "exit_code": 0}, []).result == "pass"
	decide("mypy", {"error_count": 3, "exit_code": 1}, []).result == "fail"
	decide("mypy", {"error_count": 0, "exit_code": 2}, []).result == "fail"
	decide("lint-imports", {"kept": 7, "broken": 0, "exit_code": 0}, []).result == "pass"
	decide("lint-imports", {"kept": 6, "broken": 1, "exit_code": 1}, []).result == "fail"
	decide("lint-imports", {"kept": 0, "broken": 0, "exit_code": 0}, []).result == "fail"
}

test_sbom_gate if {
	good := {"bom_format": "CycloneDX", "component_count": 150, "locked_count": 150, "exit_code": 0}
	decide("sbom", good, []).result == "pass"
	decide("sbom", object.union(good, {"component_count": 3}), []).result == "fail"
	decide("sbom", object.union(good, {"bom_format": "SPDX"}), []).result == "fail"
	decide("sbom", object.union(good, {"exit_code": 1}), []).result == "fail"
}
