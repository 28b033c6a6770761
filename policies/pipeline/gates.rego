# CI gate decisions: each gate's machine-readable facts in, pass or fail out.
# Python only collects facts; every pass/fail verdict of the pipeline is made here, so the
# rules an auditor reads are the rules that ran.
package moneypath.pipeline.gates

import rego.v1

import data.moneypath.pipeline.licences

# Thresholds live in the policy (not in the pipeline's arguments) so that lowering one is
# a reviewed policy change.
coverage_min_percent := 80

opa_coverage_min_percent := 80

sbom_min_components := 1

known_gates := {
	"ruff", "mypy", "lint-imports", "bandit", "secrets", "pip-audit", "licences", "checkov",
	"opa", "migrations", "pytest", "sbom", "build",
}

# Gates whose individual findings can be waived, and how a finding is named there.
waivable_gates := {"bandit", "pip-audit", "checkov", "licences"}

facts := object.get(input, "facts", {})

# Waivers are short-lived: at most 90 days from approval to expiry, and every run warns
# in the last 14 days so that nobody is surprised when the finding fails the gate again.
waiver_max_days := 90

waiver_warn_days := 14

ns_per_day := ((24 * 60) * 60) * 1000000000

# Why an in-scope waiver does not apply; a waiver with no reason here applies.
waiver_problems(waiver) := (((({"it has no reason" | count(trim_space(object.get(waiver, "reason", ""))) == 0} | {"it is not approved by someone other than its owner" | not independently_approved(waiver)}) | {"its approval or expiry is not an RFC 3339 time" | not waiver_times(waiver)}) | {"it has expired" | expired(waiver)}) | {sprintf("it runs longer than %d days from approval", [waiver_max_days]) | too_long(waiver)}) | {"it is approved in the future" | approved_later(waiver)}

independently_approved(waiver) if {
	approver := object.get(waiver, "approved_by", "")
	count(approver) > 0
	approver != object.get(waiver, "owner", "")
}

waiver_times(waiver) := [approved, expires] if {
	approved := time.parse_rfc3339_ns(waiver.approved_at)
	expires := time.parse_rfc3339_ns(waiver.expires)
}

now_ns := time.parse_rfc3339_ns(input.now)

expired(waiver) if waiver_times(waiver)[1] <= now_ns

too_long(waiver) if {
	[approved, expires] := waiver_times(waiver)
	expires - approved > waiver_max_days * ns_per_day
}

approved_later(waiver) if waiver_times(waiver)[0] > now_ns

in_scope_waivers contains waiver if {
	some waiver in object.get(input, "waivers", [])
	waiver.scope.gate == input.gate
}

active_waivers contains waiver if {
	some waiver in in_scope_waivers
	input.gate in waivable_gates
	count(waiver_problems(waiver)) == 0
}

warnings contains msg if {
	some waiver in active_waivers
	left_ns := waiver_times(waiver)[1] - now_ns
	left_ns <= waiver_warn_days * ns_per_day
	msg := sprintf("waiver %s expires in %d days (%s): renew it with a new approval or fix the finding", [waiver.id, ceil(left_ns / ns_per_day), waiver.expires])
}

warnings contains msg if {
	some waiver in in_scope_waivers
	some problem in waiver_problems(waiver)
	msg := sprintf("waiver %s is ignored: %s", [waiver.id, problem])
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

# The first findings themselves, so a failing run shows what to fix, not only how many.
first_findings := 10

violations contains msg if {
	input.gate == "ruff"
	some i, v in facts.violations
	i < first_findings
	msg := sprintf("ruff %s at %s:%v: %s", [v.code, v.file, v.line, object.get(v, "message", "")])
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
	some i, e in facts.errors
	i < first_findings
	msg := sprintf("mypy %s:%v: %s [%v]", [e.file, e.line, e.message, e.code])
}

violations contains msg if {
	input.gate == "mypy"
	facts.exit_code != 0
	facts.error_count == 0
	msg := sprintf("mypy exited %d", [facts.exit_code])
}

# --- SARIF for code scanning --------------------------------------------------------------

violations contains msg if {
	input.gate in {"ruff", "bandit", "checkov"}
	not facts.tool_error
	object.get(facts, "sarif_version", null) != "2.1.0"
	msg := sprintf("%s wrote no SARIF 2.1.0 report for code scanning", [input.gate])
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

# --- secrets -----------------------------------------------------------------------------

# A finding is accepted only when the committed baseline lists the same secret in the same
# file (line numbers move; the hash and the file do not).
baseline_keys := {sprintf("%s %s", [b.file, b.hashed_secret]) |
	some b in object.get(facts, "baseline", [])
	not b.is_secret == true
}

violations contains msg if {
	input.gate == "secrets"
	some finding in facts.findings
	not sprintf("%s %s", [finding.file, finding.hashed_secret]) in baseline_keys
	msg := sprintf("possible secret (%s) at %s:%d, not in .secrets.baseline", [finding.type, finding.file, finding.line])
}

violations contains msg if {
	input.gate == "secrets"
	some entry in object.get(facts, "baseline", [])
	entry.is_secret == true
	msg := sprintf("%s:%d holds a real secret (marked in .secrets.baseline): remove and rotate it", [entry.file, entry.line])
}

violations contains "secrets: .secrets.baseline is missing" if {
	input.gate == "secrets"
	facts.baseline_present == false
}

violations contains "secrets: no file was scanned" if {
	input.gate == "secrets"
	facts.files_scanned == 0
}

# --- licences ----------------------------------------------------------------------------

violations contains msg if {
	input.gate == "licences"
	some pkg in facts.packages
	licence := licences.effective(pkg)
	not licences.acceptable(licence)
	count(waivers_for({licence}, "package", pkg.name)) == 0
	msg := sprintf("licence %q of %s %s is not on the allow-list", [licence, pkg.name, pkg.version])
}

violations contains msg if {
	input.gate == "licences"
	not facts.tool_error
	listed := {p.name | some p in facts.packages}
	some pin in facts.pinned
	not pin.name in listed
	msg := sprintf("licence of %s==%s unknown: not installed", [pin.name, pin.version])
}

violations contains "licences: the runtime lock pins nothing" if {
	input.gate == "licences"
	count(object.get(facts, "pinned", [])) == 0
}

# --- migrations --------------------------------------------------------------------------

violations contains msg if {
	input.gate == "migrations"
	some line in facts.drift
	msg := sprintf("schema drift: %s", [line])
}

violations contains msg if {
	input.gate == "migrations"
	facts.drift_count > count(facts.drift)
	msg := sprintf("schema drift: %d differences in all", [facts.drift_count])
}

violations contains "migrations: no database was migrated" if {
	input.gate == "migrations"
	count(object.get(facts, "databases", [])) == 0
}

# --- build -------------------------------------------------------------------------------

violations contains msg if {
	input.gate == "build"
	some error in facts.errors
	msg := sprintf("build: %s", [error])
}

violations contains msg if {
	input.gate == "build"
	some name in {"image-context", "sbom:runtime"}
	not facts.artifacts[name]
	msg := sprintf("build: no %s digest", [name])
}

violations contains "build: no wheel was built" if {
	input.gate == "build"
	count([name | some name, _ in facts.artifacts; startswith(name, "wheel:")]) == 0
}

violations contains msg if {
	input.gate == "build"
	some source in facts.context_missing
	msg := sprintf("build: the Dockerfile copies %s, which the tree lacks", [source])
}

violations contains msg if {
	input.gate == "build"
	facts.sbom_components < facts.runtime_pins
	msg := sprintf("build: the runtime SBOM lists %d components for %d pins", [facts.sbom_components, facts.runtime_pins])
}

# Provenance must be signed with the pipeline's key, except in a report-only run (a pull
# request's), which holds no key and whose records are never written anyway.
violations contains msg if {
	input.gate == "build"
	not facts.signed == true
	not input.mode == "report-only"
	msg := sprintf("build: provenance unsigned: %v", [object.get(facts, "signing", "no key")])
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
	input.gate == "licences"
	some pkg in facts.packages
	some waiver_id in waivers_for({licences.effective(pkg)}, "package", pkg.name)
}

waivers_used contains waiver_id if {
	input.gate == "checkov"
	some check in facts.failed
	some waiver_id in waivers_for({check.check_id}, "path", check.file)
}

# Expired or unapproved waivers in scope are reported so that nobody believes they still hold.
waivers_ignored contains waiver.id if {
	some waiver in in_scope_waivers
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
	"warnings": sort([w | some w in warnings]),
}
