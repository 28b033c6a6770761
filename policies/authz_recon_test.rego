package moneypath.authz_recon_test

import rego.v1

import data.moneypath.authz

reconciler := {"client_id": "cli_ops", "scopes": ["recon:read", "recon:write"]}

recon_reader := {"client_id": "cli_ops", "scopes": ["recon:read"]}

payments_client := {"client_id": "cli_shop", "scopes": ["payments:read", "payments:write"]}

run := {"type": "recon_run", "id": "rrn_1", "owner": null}

runs := {"type": "recon_run", "id": null, "owner": null}

exception := {"type": "recon_exception", "id": "rex_1", "owner": null}

test_recon_read_scope_reads_runs_and_lists_exceptions if {
	authz.allow with input as {"principal": recon_reader, "action": "recon.runs.read", "resource": run}
	authz.allow with input as {"principal": recon_reader, "action": "recon.exceptions.list", "resource": exception}
}

test_recon_read_scope_cannot_start_a_run_or_resolve if {
	not authz.allow with input as {"principal": recon_reader, "action": "recon.runs.create", "resource": runs}
	not authz.allow with input as {"principal": recon_reader, "action": "recon.exceptions.resolve", "resource": exception}
	authz.reasons["missing scope"] with input as {"principal": recon_reader, "action": "recon.runs.create", "resource": runs}
}

test_recon_write_scope_starts_runs_and_resolves if {
	authz.allow with input as {"principal": reconciler, "action": "recon.runs.create", "resource": runs}
	authz.allow with input as {"principal": reconciler, "action": "recon.exceptions.resolve", "resource": exception}
}

test_payments_client_cannot_touch_reconciliation if {
	not authz.allow with input as {"principal": payments_client, "action": "recon.runs.read", "resource": run}
	not authz.allow with input as {"principal": payments_client, "action": "recon.runs.create", "resource": runs}
}
