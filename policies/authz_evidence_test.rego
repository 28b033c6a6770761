package moneypath.evidence_authz_test

import rego.v1

import data.moneypath.authz

# The evidence service's actions, decided by moneypath.authz: writers (service clients
# such as the CI pipeline) hold evidence:write, auditors hold evidence:read only.

auditor := {"client_id": "cli_auditor", "scopes": ["evidence:read"]}

pipeline := {"client_id": "cli_pipeline", "scopes": ["evidence:write"]}

evidence_reads := [
	"evidence.read",
	"evidence.list",
	"evidence.checkpoints.read",
	"evidence.proofs.read",
	"evidence.keys.read",
	"evidence.exports.in_toto",
	"evidence.exports.oscal",
	"evidence.exports.bundle",
	"evidence.attachments.read",
]

evidence_writes := ["evidence.create", "evidence.attachments.create"]

test_auditor_reads_every_evidence_view if {
	every action in evidence_reads {
		authz.allow with input as {"principal": auditor, "action": action, "resource": {"type": "evidence", "id": null, "owner": null}}
	}
}

test_auditor_cannot_write_evidence if {
	every action in evidence_writes {
		not authz.allow with input as {"principal": auditor, "action": action, "resource": {"type": "evidence", "id": null, "owner": null}}
		authz.reasons["missing scope"] with input as {"principal": auditor, "action": action, "resource": {"type": "evidence", "id": null, "owner": null}}
	}
}

test_pipeline_writes_evidence if {
	every action in evidence_writes {
		authz.allow with input as {"principal": pipeline, "action": action, "resource": {"type": "evidence", "id": null, "owner": null}}
	}
}

test_writer_without_read_scope_cannot_read if {
	every action in evidence_reads {
		not authz.allow with input as {"principal": pipeline, "action": action, "resource": {"type": "evidence", "id": "evd_1", "owner": null}}
	}
}

test_no_evidence_action_changes_or_deletes_records if {
	every action, _ in authz.action_scopes {
		not startswith(action, "evidence.update")
		not startswith(action, "evidence.delete")
	}
}

test_anonymous_cannot_read_evidence if {
	not authz.allow with input as {"principal": null, "action": "evidence.read", "resource": {"type": "evidence", "id": "evd_1", "owner": null}}
}
