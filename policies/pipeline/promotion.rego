# Promotion: an artifact may go to an environment only when the evidence service holds a
# passing, full-scope run of the commit from a clean tree, every required gate links a
# passing record for that commit, the build gate's record names this very artifact digest,
# and every record relied on was submitted by the pipeline's own client. No evidence, no
# promotion; a refusal is recorded too.
package moneypath.pipeline.promotion

import rego.v1

required_gates := {
	"ruff", "mypy", "lint-imports", "bandit", "secrets", "pip-audit", "licences", "checkov",
	"opa", "migrations", "pytest", "sbom", "build",
}

environments := {"staging", "production"}

# The evidence service stamps each record with its authenticated submitter (issue 10,
# item 3), so a record without the stamp, or whose stamp names another client, never counts.
require_submitter := true

default allow := false

from_pipeline(record) if record.submitted_by.client_id == input.pipeline_client_id

from_pipeline(record) if {
	not require_submitter
	not record.submitted_by
}

# A writer that policies/evidence/trust.rego trusts for the record's type counts too (the
# reviewed policies/trust/evidence_submitters.json). Asked through its verdicts rule, not a
# function, so this package still compiles where policies/evidence is not loaded.
from_pipeline(record) if {
	pair := {"type": record.type, "client_id": record.submitted_by.client_id}
	data.moneypath.evidence.trust.verdicts == [true] with input as {"pairs": [pair]}
}

# Passing runs of the commit; each is then held against the rules below.
candidate_runs contains run if {
	some run in input.runs
	run.type == "ci.run"
	run.result == "pass"
	run.subject.commit == input.commit
}

linked(run) := {name: id | some name, id in run.details.gate_records}

problems(run) := ((({"it ran on a tree with uncommitted changes" | not run.details.worktree_clean == true} | {sprintf("its scope was narrowed by %s", [concat(" ", object.get(run.details.scope, "narrowed_by", []))]) | not run.details.scope.default == true}) | {sprintf("it lacks a passing %s record for the commit", [name]) | some name in required_gates; not gate_passed(run, name)}) | {sprintf("record %s was submitted by %v, not the pipeline's client %v", [id, object.get(object.get(record, "submitted_by", {}), "client_id", "nobody"), input.pipeline_client_id]) | some id in ({run.id} | {id | some id in linked(run)}); record := records_by_id[id]; not from_pipeline(record)}) | {sprintf("its build record names no artifact %s", [input.artifact_digest]) | not builds_artifact(run)}

records_by_id := object.union(input.gate_records, {run.id: run | some run in input.runs})

gate_passed(run, name) if {
	record := input.gate_records[linked(run)[name]]
	record.result == "pass"
	record.subject.commit == input.commit
	record.details.gate == name
}

builds_artifact(run) if {
	build := input.gate_records[linked(run).build]
	some digest in build.details.outputs
	digest == input.artifact_digest
}

qualifying_runs contains run.id if {
	some run in candidate_runs
	count(problems(run)) == 0
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
	count(trim_space(object.get(input, "pipeline_client_id", ""))) == 0
	msg := "the pipeline's client id is unknown"
}

reasons contains msg if {
	input.commit != input.head_commit
	msg := sprintf("commit %s is not HEAD (%s) of the tree being promoted", [input.commit, input.head_commit])
}

reasons contains "the tree being promoted has uncommitted changes" if {
	not input.tree_clean == true
}

reasons contains msg if {
	count(qualifying_runs) == 0
	msg := sprintf("no passing pipeline run with evidence for every required gate for commit %s", [input.commit])
}

reasons contains msg if {
	count(qualifying_runs) == 0
	some run in candidate_runs
	some problem in problems(run)
	msg := sprintf("run %s: %s", [run.id, problem])
}

allow if count(reasons) == 0

decision := {
	"allow": allow,
	"reasons": sort([r | some r in reasons]),
	"runs": sort([r | some r in qualifying_runs]),
}
