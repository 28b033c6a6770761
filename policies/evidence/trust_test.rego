package moneypath.evidence.trust_test

import rego.v1

import data.moneypath.evidence.trust

reviewed := {
	"ci.**": ["cli_pipeline"],
	"ledger.checkpoint": ["cli_worker"],
	"recon.run": ["cli_recon"],
}

test_trusts_listed_writer_for_matching_types if {
	trust.trusted("ci.run", "cli_pipeline") with data.trust.evidence_submitters as reviewed
	trust.trusted("ci.gate", "cli_pipeline") with data.trust.evidence_submitters as reviewed
	trust.trusted("ledger.checkpoint", "cli_worker") with data.trust.evidence_submitters as reviewed
}

test_refuses_other_writer_for_listed_type if {
	not trust.trusted("ci.run", "cli_other") with data.trust.evidence_submitters as reviewed
	not trust.trusted("ledger.checkpoint", "cli_pipeline") with data.trust.evidence_submitters as reviewed
}

test_trusts_only_reconciliation_client_for_recon_runs if {
	trust.trusted("recon.run", "cli_recon") with data.trust.evidence_submitters as reviewed
	not trust.trusted("recon.run", "cli_worker") with data.trust.evidence_submitters as reviewed
	not trust.trusted("ledger.checkpoint", "cli_recon") with data.trust.evidence_submitters as reviewed
}

test_shipped_document_names_recon_runs_and_trusts_nobody_for_them if {
	data.trust.evidence_submitters["recon.run"] == []
	not trust.trusted("recon.run", "cli_anyone")
}

test_refuses_every_writer_for_unlisted_type if {
	not trust.trusted("manual.review", "cli_pipeline") with data.trust.evidence_submitters as reviewed
}

test_single_star_matches_one_segment_only if {
	not trust.trusted("ci.gate.extra", "cli_a") with data.trust.evidence_submitters as {"ci.*": ["cli_a"]}
	trust.trusted("ci.gate", "cli_a") with data.trust.evidence_submitters as {"ci.*": ["cli_a"]}
}

test_registered_writer_is_trusted_for_its_patterns if {
	trust.trusted("ci.run", "cli_ci") with data.trust.registered_evidence_submitters as {"cli_ci": ["ci.**"]}
	not trust.trusted("ledger.checkpoint", "cli_ci") with data.trust.registered_evidence_submitters as {"cli_ci": ["ci.**"]}
}

test_verdicts_answer_each_pair_in_order if {
	trust.verdicts == [true, false, false] with data.trust.evidence_submitters as reviewed
		with input as {"pairs": [
			{"type": "ci.run", "client_id": "cli_pipeline"},
			{"type": "ci.run", "client_id": "cli_other"},
			{"type": "sast_scan", "client_id": "cli_pipeline"},
		]}
}

test_shipped_document_trusts_nobody_until_configured if {
	not trust.trusted("ci.run", "cli_anyone")
}

anchor_registered := {"cli_anchor": ["ledger.checkpoint"]}

test_exclusive_type_is_admitted_only_from_its_trusted_writer if {
	trust.admit with input as {"type": "ledger.checkpoint", "client_id": "cli_anchor"}
		with data.trust.registered_evidence_submitters as anchor_registered
	not trust.admit with input as {"type": "ledger.checkpoint", "client_id": "cli_rogue"}
		with data.trust.registered_evidence_submitters as anchor_registered
	trust.admit with input as {"type": "ledger.checkpoint", "client_id": "cli_worker"}
		with data.trust.evidence_submitters as reviewed
}

test_other_types_are_admitted_from_any_writer_but_not_trusted if {
	trust.admit with input as {"type": "ci.run", "client_id": "cli_rogue"}
	not trust.trusted("ci.run", "cli_rogue")
}

test_anchor_writer_is_trusted_for_exactly_ledger_checkpoint if {
	trust.trusted("ledger.checkpoint", "cli_anchor") with data.trust.registered_evidence_submitters as anchor_registered
	not trust.trusted("ledger.checkpoint.extra", "cli_anchor") with data.trust.registered_evidence_submitters as anchor_registered
	not trust.trusted("ledger.verify", "cli_anchor") with data.trust.registered_evidence_submitters as anchor_registered
	not trust.trusted("ci.run", "cli_anchor") with data.trust.registered_evidence_submitters as anchor_registered
}

test_shipped_document_makes_ledger_checkpoint_exclusive if {
	trust.exclusive("ledger.checkpoint")
	not trust.exclusive("ci.run")
	not trust.admit with input as {"type": "ledger.checkpoint", "client_id": "cli_anyone"}
}
