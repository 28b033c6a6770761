# Promotion: an artifact may go to an environment only when the evidence service holds a
# passing run for the commit, that run covers every required gate, and each linked gate
# record is itself a passing record for the same commit. No evidence, no promotion.
# Only records whose verified writer (submitted_by, set by the evidence service) the trust
# policy accepts for their type count: any other evidence:write client may add records,
# but cannot make a commit promotable.
package moneypath.pipeline.promotion

import rego.v1

required_gates := {"ruff", "mypy", "lint-imports", "bandit", "pip-audit", "checkov", "opa", "pytest", "sbom"}

environments := {"staging", "production"}

default allow := false

# A run record qualifies when it ran on a clean checkout of the commit (evidence from a tree
# with uncommitted changes says nothing about the commit) and every required gate links a
# passing record for that commit.
qualifying_runs contains run.id if {
	some run in input.runs
	run.type == "ci.run"
	trusted_record(run)
	run.result == "pass"
	run.subject.commit == input.commit
	run.details.worktree_clean == true
	linked := {name: id | some name, id in run.details.gate_records}
	every name in required_gates {
		record := input.gate_records[linked[name]]
		trusted_record(record)
		record.result == "pass"
		record.subject.commit == input.commit
		record.details.gate == name
	}
}

# Asked through the trust package's verdicts (a rule, not a function), so this package
# still compiles where policies/evidence is not loaded (the gate evaluations); there
# nothing is trusted and no run qualifies.
trusted_record(record) if {
	pair := {"type": record.type, "client_id": record.submitted_by.client_id}
	data.moneypath.evidence.trust.verdicts == [true] with input as {"pairs": [pair]}
}

# Say so when a run was left out for its writer, so an operator sees why evidence that
# looks like a pass does not promote.
reasons contains msg if {
	count(qualifying_runs) == 0
	some run in input.runs
	not trusted_record(run)
	writer := object.get(run, ["submitted_by", "client_id"], "an unrecorded writer")
	msg := sprintf("run %s was written by %s, which is not trusted for %s records", [run.id, writer, run.type])
}

reasons contains msg if {
	not input.environment in environments
	msg := sprintf("unknown environment %q", [input.environment])
}

reasons contains msg if {
	not regex.match(`^sha256:[0-9a-f]{64}$`, input.artifact_digest)
	msg := sprintf("artifact digest %q is not sha256:<64 hex>", [input.artifact_digest])
}

reasons contains msg if {
	count(trim_space(object.get(input, "actor", ""))) == 0
	msg := "the promoting actor is unknown"
}

reasons contains msg if {
	count(qualifying_runs) == 0
	msg := sprintf("no passing pipeline run with evidence for every required gate for commit %s", [input.commit])
}

allow if count(reasons) == 0

decision := {
	"allow": allow,
	"reasons": sort([r | some r in reasons]),
	"runs": sort([r | some r in qualifying_runs]),
}
