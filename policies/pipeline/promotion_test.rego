package moneypath.pipeline.promotion_test

import rego.v1

import data.moneypath.pipeline.promotion

commit := "0123456789abcdef0123456789abcdef01234567"

digest := "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

pipeline_writer := {"client_id": "cli_pipeline", "key_id": "key_pipeline"}

trusted_writers := {"ci.**": ["cli_pipeline"]}

gate_records(result) := gate_records_by(result, pipeline_writer)

gate_records_by(result, writer) := {sprintf("evd_%s", [name]): {"type": "ci.gate", "result": result, "subject": {"commit": commit}, "details": {"gate": name}, "submitted_by": writer} |
	some name in promotion.required_gates
}

run_record(result) := {
	"id": "evd_run",
	"type": "ci.run",
	"submitted_by": pipeline_writer,
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
	d := promotion.decision with data.trust.evidence_submitters as trusted_writers with input as request([run_record("pass")], gate_records("pass"))
	d.allow
	d.runs == ["evd_run"]
}

test_promotion_refused_without_evidence if {
	d := promotion.decision with data.trust.evidence_submitters as trusted_writers with input as request([], {})
	not d.allow
	count(d.reasons) == 1
}

test_promotion_refused_when_the_run_failed if {
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as request([run_record("fail")], gate_records("pass"))
}

test_promotion_refused_when_a_linked_gate_record_failed_or_is_missing if {
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as request([run_record("pass")], gate_records("fail"))
	records := object.remove(gate_records("pass"), ["evd_pytest"])
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as request([run_record("pass")], records)
}

test_promotion_refused_for_another_commit if {
	req := object.union(request([run_record("pass")], gate_records("pass")), {"commit": "ffffffffffffffffffffffffffffffffffffffff"})
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as req
}

test_promotion_refused_for_bad_environment_digest_or_actor if {
	base := request([run_record("pass")], gate_records("pass"))
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as object.union(base, {"environment": "moon"})
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as object.union(base, {"artifact_digest": "latest"})
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as object.union(base, {"actor": " "})
}

test_promotion_refused_when_the_run_was_on_a_dirty_tree if {
	dirty := object.union(run_record("pass"), {"details": {"worktree_clean": false}})
	not promotion.allow with data.trust.evidence_submitters as trusted_writers with input as request([dirty], gate_records("pass"))
}

test_promotion_refused_when_the_run_comes_from_an_untrusted_writer if {
	rogue := {"client_id": "cli_rogue", "key_id": "key_rogue"}
	run := object.union(run_record("pass"), {"submitted_by": rogue})
	d := promotion.decision with data.trust.evidence_submitters as trusted_writers
		with input as request([run], gate_records_by("pass", rogue))
	not d.allow
	"run evd_run was written by cli_rogue, which is not trusted for ci.run records" in d.reasons
}

test_promotion_refused_when_gate_records_come_from_an_untrusted_writer if {
	rogue := {"client_id": "cli_rogue", "key_id": "key_rogue"}
	not promotion.allow with data.trust.evidence_submitters as trusted_writers
		with input as request([run_record("pass")], gate_records_by("pass", rogue))
}

test_promotion_refused_when_records_name_no_writer if {
	run := object.remove(run_record("pass"), ["submitted_by"])
	not promotion.allow with data.trust.evidence_submitters as trusted_writers
		with input as request([run], gate_records("pass"))
}

test_promotion_allowed_for_a_writer_registered_at_run_time if {
	promotion.allow with data.trust.registered_evidence_submitters as {"cli_pipeline": ["ci.**"]}
		with input as request([run_record("pass")], gate_records("pass"))
}
