package moneypath.pipeline.promotion_test

import rego.v1

import data.moneypath.pipeline.promotion

commit := "0123456789abcdef0123456789abcdef01234567"

digest := "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

gate_records(result) := {sprintf("evd_%s", [name]): {"result": result, "subject": {"commit": commit}, "details": {"gate": name}} |
	some name in promotion.required_gates
}

run_record(result) := {
	"id": "evd_run",
	"type": "ci.run",
	"result": result,
	"subject": {"commit": commit},
	"details": {"worktree_clean": true, "gate_records": {name: sprintf("evd_%s", [name]) | some name in promotion.required_gates}},
}

request(runs, records) := {
	"commit": commit,
	"artifact_digest": digest,
	"environment": "production",
	"actor": "carol",
	"runs": runs,
	"gate_records": records,
}

test_promotion_allowed_with_a_passing_run_and_passing_gate_records if {
	d := promotion.decision with input as request([run_record("pass")], gate_records("pass"))
	d.allow
	d.runs == ["evd_run"]
}

test_promotion_refused_without_evidence if {
	d := promotion.decision with input as request([], {})
	not d.allow
	count(d.reasons) == 1
}

test_promotion_refused_when_the_run_failed if {
	not promotion.allow with input as request([run_record("fail")], gate_records("pass"))
}

test_promotion_refused_when_a_linked_gate_record_failed_or_is_missing if {
	not promotion.allow with input as request([run_record("pass")], gate_records("fail"))
	records := object.remove(gate_records("pass"), ["evd_pytest"])
	not promotion.allow with input as request([run_record("pass")], records)
}

test_promotion_refused_for_another_commit if {
	req := object.union(request([run_record("pass")], gate_records("pass")), {"commit": "ffffffffffffffffffffffffffffffffffffffff"})
	not promotion.allow with input as req
}

test_promotion_refused_for_bad_environment_digest_or_actor if {
	base := request([run_record("pass")], gate_records("pass"))
	not promotion.allow with input as object.union(base, {"environment": "moon"})
	not promotion.allow with input as object.union(base, {"artifact_digest": "latest"})
	not promotion.allow with input as object.union(base, {"actor": " "})
}

test_promotion_refused_when_the_run_was_on_a_dirty_tree if {
	dirty := object.union(run_record("pass"), {"details": {"worktree_clean": false}})
	not promotion.allow with input as request([dirty], gate_records("pass"))
}
