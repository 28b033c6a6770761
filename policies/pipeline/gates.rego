# CI gate decisions: each gate's machine-readable facts in, pass or fail out.
# Python only collects facts; every pass/fail verdict of the pipeline is made here, so the
# rules an auditor reads are the rules that ran.
package moneypath.pipeline.gates

import rego.v1

# Thresholds live in the policy (not in the pipeline's arguments) so that lowering one is
# a reviewed policy change.
coverage_min_percent := 80

opa_coverage_min_percent := 80

sbom_min_components := 1

known_gates := {"ruff", "mypy", "lint-imports", "bandit", "pip-audit", "checkov", "opa", "pytest", "sbom"}

# Gates whose individual findings can be waived, and how a finding is named there.
waivable_gates := {"bandit", "pip-audit", "checkov"}

facts := object.get(input, "facts", {})

# A waiver applies while it is approved by someone other than its owner, carries a reason,
# and has not expired. A waiver whose expiry cannot be parsed never applies.
active_waivers contains waiver if {
	some waiver in object.get(input, "waivers", [])
	waiver.scope.gate == input.gate
	input.gate in waivable_gates
	count(trim_space(object.get(waiver, "reason", ""))) > 0
	approver := object.get(waiver, "approved_by", "")
	count(approver) > 0
	approver != object.get(waiver, "owner", "")
	time.parse_rfc3339_ns(waiver.expires) > time.parse_rfc3339_ns(input.now)
}

# The active waivers covering a finding known by any of `names` at `location` (a package for
# pip-audit, a file for bandit and checkov). A scope without a location covers every one.
waivers_for(names, key, location) := {waiver.id |
	some waiver in active_waivers
	waiver.scope.finding in names
	object.get(waiver.scope, key, location) == location
}

# --- every gate -------------------------------------------------------------------------

violations contains msg if {
	not input.gate in known_gates
	msg := sprintf("unknown gate %q", [input.gate])
}

violations contains msg if {
	error := facts.tool_error
	msg := sprintf("tool could not run: %s", [error])
}

# --- ruff ------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "ruff"
	facts.violation_count > 0
	msg := sprintf("ruff: %d lint violations", [facts.violation_count])
}

violations contains msg if {
	input.gate == "ruff"
	some path in facts.unformatted
	msg := sprintf("ruff format: %s is not formatted", [path])
}

violations contains msg if {
	input.gate == "ruff"
	not facts.format_exit_code in {0, 1}
	msg := "ruff format did not complete"
}

# --- mypy --------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "mypy"
	facts.error_count > 0
	msg := sprintf("mypy --strict: %d type errors", [facts.error_count])
}

violations contains msg if {
	input.gate == "mypy"
	facts.exit_code != 0
	facts.error_count == 0
	msg := sprintf("mypy exited %d", [facts.exit_code])
}

# --- import-linter -----------------------------------------------------------------------

violations contains msg if {
	input.gate == "lint-imports"
	facts.broken > 0
	msg := sprintf("import-linter: %d contracts broken", [facts.broken])
}

violations contains msg if {
	input.gate == "lint-imports"
	object.get(facts, "kept", 0) == 0
	msg := "import-linter kept no contract"
}

violations contains msg if {
	input.gate == "lint-imports"
	facts.exit_code != 0
	msg := sprintf("lint-imports exited %d", [facts.exit_code])
}

# --- bandit ------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "bandit"
	some issue in facts.issues
	issue.severity == "HIGH"
	count(waivers_for({issue.test_id}, "path", issue.file)) == 0
	msg := sprintf("bandit HIGH %s at %s:%d: %s", [issue.test_id, issue.file, issue.line, issue.text])
}

violations contains msg if {
	input.gate == "bandit"
	some error in facts.scan_errors
	msg := sprintf("bandit could not scan %s", [object.get(error, "filename", "?")])
}

# --- pip-audit ---------------------------------------------------------------------------

violations contains msg if {
	input.gate == "pip-audit"
	some dep in facts.dependencies
	some vuln in dep.vulns
	names := {vuln.id} | {alias | some alias in vuln.aliases}
	count(waivers_for(names, "package", dep.name)) == 0
	msg := sprintf("known vulnerability %s (aliases %s) in %s %s", [vuln.id, concat(", ", vuln.aliases), dep.name, dep.version])
}

violations contains msg if {
	input.gate == "pip-audit"
	some item in array.concat(object.get(facts, "unchecked", []), object.get(facts, "skipped", []))
	msg := sprintf("could not check %s: %s", [item.name, item.reason])
}

# Every locked pin must have been audited; a pin pip-audit never asked about is unchecked.
violations contains msg if {
	input.gate == "pip-audit"
	not facts.tool_error
	audited := {sprintf("%s==%s", [d.name, d.version]) | some d in facts.dependencies}
	some pin in facts.locked
	not sprintf("%s==%s", [pin.name, pin.version]) in audited
	msg := sprintf("could not check %s==%s: not audited", [pin.name, pin.version])
}

# The unpacked snapshot must be the shipped one, file for file.
violations contains msg if {
	input.gate == "pip-audit"
	msg := facts.advisory_db.tree_mismatch
}

violations contains "pip-audit: the lock file pins nothing" if {
	input.gate == "pip-audit"
	count(object.get(facts, "locked", [])) == 0
}

# --- checkov -----------------------------------------------------------------------------

violations contains msg if {
	input.gate == "checkov"
	some check in facts.failed
	count(waivers_for({check.check_id}, "path", check.file)) == 0
	msg := sprintf("checkov %s failed on %s (%s): %s", [check.check_id, check.file, check.resource, check.name])
}

violations contains msg if {
	input.gate == "checkov"
	some error in facts.parsing_errors
	msg := sprintf("checkov could not parse %s", [error])
}

violations contains msg if {
	input.gate == "checkov"
	some framework in {"dockerfile", "github_actions"}
	object.get(facts.frameworks, framework, 0) == 0
	msg := sprintf("checkov scanned nothing for %s", [framework])
}

# --- opa ---------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "opa"
	facts.fmt.exit_code != 0
	msg := sprintf("opa fmt: not formatted: %s", [concat(", ", facts.fmt.unformatted)])
}

violations contains msg if {
	input.gate == "opa"
	facts.check.exit_code != 0
	msg := sprintf("opa check --strict failed: %s", [facts.check.errors])
}

violations contains msg if {
	input.gate == "opa"
	some case in facts.test.failed
	msg := sprintf("opa test failed: %s.%s %s", [object.get(case, "package", "?"), object.get(case, "name", "?"), object.get(case, "error", "")])
}

violations contains msg if {
	input.gate == "opa"
	facts.test.exit_code != 0
	count(facts.test.failed) == 0
	msg := sprintf("opa test exited %d", [facts.test.exit_code])
}

violations contains "opa test ran no tests" if {
	input.gate == "opa"
	facts.test.total == 0
}

violations contains msg if {
	input.gate == "opa"
	not facts.coverage_percent >= opa_coverage_min_percent
	msg := sprintf("opa test coverage %v%% is below %d%%", [facts.coverage_percent, opa_coverage_min_percent])
}

# --- pytest ------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "pytest"
	some case in facts.failed_cases
	msg := sprintf("test failed: %s", [case])
}

violations contains msg if {
	input.gate == "pytest"
	facts.failures + facts.errors > count(facts.failed_cases)
	msg := sprintf("pytest: %d failures, %d errors", [facts.failures, facts.errors])
}

violations contains "pytest ran no tests" if {
	input.gate == "pytest"
	facts.tests == 0
}

violations contains msg if {
	input.gate == "pytest"
	facts.source == "executed"
	facts.exit_code != 0
	msg := sprintf("pytest exited %d", [facts.exit_code])
}

violations contains msg if {
	input.gate == "pytest"
	not facts.coverage_percent >= coverage_min_percent
	msg := sprintf("line+branch coverage %v%% is below %d%%", [facts.coverage_percent, coverage_min_percent])
}

# --- sbom --------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "sbom"
	facts.bom_format != "CycloneDX"
	msg := sprintf("SBOM is not CycloneDX (%v)", [facts.bom_format])
}

violations contains msg if {
	input.gate == "sbom"
	facts.component_count < max([sbom_min_components, facts.locked_count])
	msg := sprintf("SBOM lists %d components for %d locked packages", [facts.component_count, facts.locked_count])
}

violations contains msg if {
	input.gate == "sbom"
	facts.exit_code != 0
	msg := sprintf("cyclonedx-py exited %d", [facts.exit_code])
}

# --- verdict -----------------------------------------------------------------------------

waivers_used contains waiver_id if {
	input.gate == "bandit"
	some issue in facts.issues
	some waiver_id in waivers_for({issue.test_id}, "path", issue.file)
}

waivers_used contains waiver_id if {
	input.gate == "pip-audit"
	some dep in facts.dependencies
	some vuln in dep.vulns
	some waiver_id in waivers_for({vuln.id} | {alias | some alias in vuln.aliases}, "package", dep.name)
}

waivers_used contains waiver_id if {
	input.gate == "checkov"
	some check in facts.failed
	some waiver_id in waivers_for({check.check_id}, "path", check.file)
}

# Expired or unapproved waivers in scope are reported so that nobody believes they still hold.
waivers_ignored contains waiver.id if {
	some waiver in object.get(input, "waivers", [])
	waiver.scope.gate == input.gate
	not waiver in active_waivers
}

default result := "fail"

result := "pass" if count(violations) == 0

decision := {
	"gate": input.gate,
	"result": result,
	"violations": sort([v | some v in violations]),
	"waivers_used": sort([w | some w in waivers_used]),
	"waivers_ignored": sort([w | some w in waivers_ignored]),
}
