package moneypath.pipeline.promotion_test

import rego.v1

import data.moneypath.pipeline.promotion

commit := "0123456789abcdef0123456789abcdef01234567"

digest := "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

pipeline_client := "cli_pipeline"

stamp := {"client_id": pipeline_client, "key_id": "key_1"}

gate_record(name, result) := {
	"result": result,
	"subject": {"commit": commit},
	"details": {"gate": name, "outputs": {"image-context": digest}},
	"submitted_by": stamp,
}

gate_records(result) := {sprintf("evd_%s", [name]): gate_record(name, result) | some name in promotion.required_gates}

run_record(result) := {
	"id": "evd_run",
	"type": "ci.run",
	"result": result,
	"subject": {"commit": commit},
	"submitted_by": stamp,
	"details": {
		"worktree_clean": true,
		"scope": {"default": true, "narrowed_by": []},
		"gate_records": {name: sprintf("evd_%s", [name]) | some name in promotion.required_gates},
	},
}

request(runs, records) := {
	"commit": commit,
	"head_commit": commit,
	"tree_clean": true,
	"artifact_digest": digest,
	"environment": "production",
	"actor": "carol",
	"pipeline_client_id": pipeline_client,
	"runs": runs,
	"gate_records": records,
}

test_promotion_allowed_for_the_built_artifact_of_a_full_passing_run if {
	d := promotion.decision with input as request([run_record("pass")], gate_records("pass"))
	d.allow
	d.runs == ["evd_run"]
}

test_promotion_refused_without_evidence if {
	d := promotion.decision with input as request([], {})
	not d.allow
	count(d.reasons) == 1
}

test_promotion_refused_for_a_digest_no_build_record_names if {
	other := "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	d := promotion.decision with input as object.union(request([run_record("pass")], gate_records("pass")), {"artifact_digest": other})
	not d.allow
	sprintf("run evd_run: its build record names no artifact %s", [other]) in d.reasons
}

test_promotion_refused_for_a_run_with_a_narrowed_scope if {
	narrowed := object.union(run_record("pass"), {"details": {"scope": {"default": false, "narrowed_by": ["--packages", "--waivers"]}}})
	d := promotion.decision with input as request([narrowed], gate_records("pass"))
	not d.allow
	"run evd_run: its scope was narrowed by --packages --waivers" in d.reasons
}

test_promotion_refused_for_records_from_a_client_that_is_not_the_pipeline if {
	records := object.union(gate_records("pass"), {"evd_bandit": object.union(gate_record("bandit", "pass"), {"submitted_by": {"client_id": "cli_intruder", "key_id": "k"}})})
	d := promotion.decision with input as request([run_record("pass")], records)
	not d.allow
	"run evd_run: record evd_bandit was submitted by cli_intruder, not the pipeline's client cli_pipeline" in d.reasons
}

test_promotion_refused_when_the_run_record_itself_came_from_another_client if {
	run := object.union(run_record("pass"), {"submitted_by": {"client_id": "cli_intruder", "key_id": "k"}})
	not promotion.allow with input as request([run], gate_records("pass"))
}

test_promotion_refused_when_the_run_failed if {
	not promotion.allow with input as request([run_record("fail")], gate_records("pass"))
}

test_promotion_refused_when_a_linked_gate_record_failed_or_is_missing if {
	not promotion.allow with input as request([run_record("pass")], gate_records("fail"))
	records := object.remove(gate_records("pass"), ["evd_pytest"])
	d := promotion.decision with input as request([run_record("pass")], records)
	"run evd_run: it lacks a passing pytest record for the commit" in d.reasons
}

test_promotion_refused_for_another_commit_or_one_that_is_not_head if {
	req := object.union(request([run_record("pass")], gate_records("pass")), {"commit": "ffffffffffffffffffffffffffffffffffffffff"})
	not promotion.allow with input as req
	moved := object.union(request([run_record("pass")], gate_records("pass")), {"head_commit": "ffffffffffffffffffffffffffffffffffffffff"})
	not promotion.allow with input as moved
	dirty := object.union(request([run_record("pass")], gate_records("pass")), {"tree_clean": false})
	d := promotion.decision with input as dirty
	d.reasons == ["the tree being promoted has uncommitted changes"]
}

test_promotion_refused_for_bad_environment_digest_actor_or_client if {
	base := request([run_record("pass")], gate_records("pass"))
	not promotion.allow with input as object.union(base, {"environment": "moon"})
	not promotion.allow with input as object.union(base, {"artifact_digest": "latest"})
	not promotion.allow with input as object.union(base, {"actor": " "})
	not promotion.allow with input as object.union(base, {"pipeline_client_id": ""})
}

test_promotion_refused_when_the_run_was_on_a_dirty_tree if {
	dirty := object.union(run_record("pass"), {"details": {"worktree_clean": false}})
	not promotion.allow with input as request([dirty], gate_records("pass"))
}

test_promotion_refused_when_records_carry_no_submitter_stamp if {
	unstamped := {id: object.remove(r, ["submitted_by"]) | some id, r in gate_records("pass")}
	run := object.remove(run_record("pass"), ["submitted_by"])
	not promotion.allow with input as request([run], unstamped)
	promotion.allow with input as request([run], unstamped) with promotion.require_submitter as false
}
