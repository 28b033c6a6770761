package moneypath.pipeline.gates_test

import rego.v1

import data.moneypath.pipeline.gates

now := "2026-11-28T12:00:00Z"

approved_waiver(scope, expires) := {
	"id": "WVR-1",
	"owner": "alice",
	"approved_by": "bob",
	"approved_at": "2026-11-01T00:00:00Z",
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
	decide("bandit", {"issues": [medium], "scan_errors": [], "sarif_version": "2.1.0"}, []).result == "pass"
}

test_bandit_high_is_waivable_by_path if {
	high := {"test_id": "B602", "severity": "HIGH", "file": "app/x.py", "line": 3, "text": "shell"}
	w := approved_waiver({"gate": "bandit", "finding": "B602", "path": "app/x.py"}, "2027-01-01T00:00:00Z")
	d := decide("bandit", {"issues": [high], "scan_errors": [], "sarif_version": "2.1.0"}, [w])
	d.result == "pass"
	d.waivers_used == ["WVR-1"]
}

test_bandit_fails_when_a_file_could_not_be_scanned if {
	decide("bandit", {"issues": [], "scan_errors": [{"filename": "a.py"}]}, []).result == "fail"
}

checkov_clean := {"frameworks": {"dockerfile": 87, "github_actions": 28}, "failed": [], "parsing_errors": [], "sarif_version": "2.1.0"}

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
	decide("ruff", {"violation_count": 0, "unformatted": [], "format_exit_code": 0, "sarif_version": "2.1.0"}, []).result == "pass"
	decide("ruff", {"violation_count": 0, "unformatted": [], "format_exit_code": 0}, []).violations == ["ruff wrote no SARIF 2.1.0 report for code scanning"]
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

secret_finding := {"file": "demo/config.py", "type": "AWS Access Key", "hashed_secret": "abc", "line": 3}

test_secrets_fail_when_a_finding_is_not_in_the_baseline if {
	d := decide("secrets", {"files_scanned": 3, "baseline_present": true, "baseline": [], "findings": [secret_finding]}, [])
	d.result == "fail"
	d.violations == ["possible secret (AWS Access Key) at demo/config.py:3, not in .secrets.baseline"]
}

test_secrets_pass_when_the_baseline_accepts_the_finding if {
	accepted := object.union(secret_finding, {"is_secret": false, "line": 9})
	decide("secrets", {"files_scanned": 3, "baseline_present": true, "baseline": [accepted], "findings": [secret_finding]}, []).result == "pass"
}

test_secrets_fail_when_the_baseline_marks_a_real_secret_or_is_missing if {
	real := object.union(secret_finding, {"is_secret": true})
	d := decide("secrets", {"files_scanned": 3, "baseline_present": false, "baseline": [real], "findings": [secret_finding]}, [])
	count(d.violations) == 3
}

licence_facts(licence) := {
	"pinned": [{"name": "demo", "version": "1.0"}],
	"packages": [{"name": "demo", "version": "1.0", "licence": licence}],
}

test_licences_pass_when_every_alternative_or_conjunct_is_allowed if {
	decide("licences", licence_facts("MIT"), []).result == "pass"
	decide("licences", licence_facts("Apache Software License; MIT License"), []).result == "pass"
	decide("licences", licence_facts("Apache-2.0 AND BSD-2-Clause"), []).result == "pass"
	decide("licences", licence_facts("GPL-3.0-only OR MIT"), []).result == "pass"
	decide("licences", licence_facts("Mozilla Public License 2.0 (MPL 2.0)"), []).result == "pass"
	decide("licences", licence_facts("(MIT OR Apache-2.0)"), []).result == "pass"
}

test_licences_fail_when_gpl_only_or_unknown if {
	d := decide("licences", licence_facts("GPL-3.0-only"), [])
	d.violations == [`licence "GPL-3.0-only" of demo 1.0 is not on the allow-list`]
	decide("licences", licence_facts("MIT AND GPL-3.0-only"), []).result == "fail"
	decide("licences", licence_facts("UNKNOWN"), []).result == "fail"
}

test_licences_use_the_reviewed_licence_when_metadata_has_none if {
	facts := {"pinned": [{"name": "pgserver", "version": "0.1.4"}], "packages": [{"name": "pgserver", "version": "0.1.4", "licence": "UNKNOWN"}]}
	decide("licences", facts, []).result == "pass"
}

test_licences_fail_when_a_pin_is_not_installed_or_nothing_is_pinned if {
	facts := {"pinned": [{"name": "ghost", "version": "1.0"}], "packages": []}
	decide("licences", facts, []).violations == ["licence of ghost==1.0 unknown: not installed"]
	decide("licences", {"pinned": [], "packages": []}, []).violations == ["licences: the runtime lock pins nothing"]
}

test_licences_waiver_covers_its_package_when_approved if {
	w := approved_waiver({"gate": "licences", "finding": "GPL-3.0-only", "package": "demo"}, "2027-01-01T00:00:00Z")
	d := decide("licences", licence_facts("GPL-3.0-only"), [w])
	d.result == "pass"
	d.waivers_used == ["WVR-1"]
}

test_migrations_fail_on_drift_and_pass_without if {
	d := decide("migrations", {"databases": ["app"], "drift": ["app: unexpected column x.y int"], "drift_count": 2}, [])
	d.violations == ["schema drift: 2 differences in all", "schema drift: app: unexpected column x.y int"]
	decide("migrations", {"databases": ["app"], "drift": [], "drift_count": 0}, []).result == "pass"
	decide("migrations", {"databases": [], "drift": [], "drift_count": 0}, []).result == "fail"
}

test_waiver_is_ignored_when_it_runs_longer_than_90_days if {
	w := object.union(approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2027-02-01T00:00:00Z"), {"approved_at": "2026-11-01T00:00:00Z"})
	d := decide("pip-audit", jinja_facts, [w])
	d.result == "fail"
	d.waivers_ignored == ["WVR-1"]
	d.warnings == ["waiver WVR-1 is ignored: it runs longer than 90 days from approval"]
}

test_waiver_warns_when_it_expires_within_14_days if {
	w := approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2026-12-08T12:00:00Z")
	d := decide("pip-audit", jinja_facts, [w])
	d.result == "pass"
	d.warnings == ["waiver WVR-1 expires in 10 days (2026-12-08T12:00:00Z): renew it with a new approval or fix the finding"]
	far := decide("pip-audit", jinja_facts, [approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2027-01-01T00:00:00Z")])
	far.warnings == []
}

test_waiver_is_ignored_when_approved_in_the_future_or_without_times if {
	later := object.union(approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2027-01-01T00:00:00Z"), {"approved_at": "2026-12-01T00:00:00Z"})
	decide("pip-audit", jinja_facts, [later]).warnings == ["waiver WVR-1 is ignored: it is approved in the future"]
	untimed := object.remove(approved_waiver({"gate": "pip-audit", "finding": "PYSEC-2019-217"}, "2027-01-01T00:00:00Z"), ["approved_at"])
	decide("pip-audit", jinja_facts, [untimed]).warnings == ["waiver WVR-1 is ignored: its approval or expiry is not an RFC 3339 time"]
}

test_ruff_and_mypy_name_their_first_findings_when_they_fail if {
	found := [{"code": "F401", "file": "./a.py", "line": 1, "message": "`os` imported but unused"}]
	d := decide("ruff", {"violation_count": 1, "violations": found, "unformatted": [], "format_exit_code": 0, "sarif_version": "2.1.0"}, [])
	"ruff F401 at ./a.py:1: `os` imported but unused" in d.violations
	errors := [{"file": "a.py", "line": 2, "message": "Incompatible return value", "code": "return-value"}]
	m := decide("mypy", {"error_count": 1, "errors": errors, "exit_code": 1}, [])
	"mypy a.py:2: Incompatible return value [return-value]" in m.violations
}

build_facts := {
	"errors": [],
	"artifacts": {"wheel:moneypath-0.1.0-py3-none-any.whl": "sha256:1", "image-context": "sha256:2", "sbom:runtime": "sha256:3"},
	"context_missing": [],
	"sbom_components": 55,
	"runtime_pins": 55,
	"signed": true,
}

test_build_passes_when_built_signed_and_complete if {
	decide("build", build_facts, []).result == "pass"
}

test_build_fails_when_unsigned_outside_report_only_runs if {
	unsigned := object.union(build_facts, {"signed": false, "signing": "no pipeline key"})
	decide("build", unsigned, []).violations == ["build: provenance unsigned: no pipeline key"]
	d := gates.decision with input as {"gate": "build", "facts": unsigned, "waivers": [], "now": now, "mode": "report-only"}
	d.result == "pass"
}

test_build_fails_when_an_artifact_or_context_file_is_missing if {
	broken := object.union(object.remove(build_facts, ["artifacts"]), {"artifacts": {}, "context_missing": ["app"], "errors": ["wheel: boom"], "sbom_components": 3})
	d := decide("build", broken, [])
	d.violations == [
		"build: no image-context digest",
		"build: no sbom:runtime digest",
		"build: no wheel was built",
		"build: the Dockerfile copies app, which the tree lacks",
		"build: the runtime SBOM lists 3 components for 55 pins",
		"build: wheel: boom",
	]
}
