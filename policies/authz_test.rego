package moneypath.authz_test

import rego.v1

import data.moneypath.authz

ledger_reader := {"client_id": "cli_a", "scopes": ["ledger:read"]}

payments_client := {"client_id": "cli_a", "scopes": ["payments:read", "payments:write"]}

test_denies_by_default if {
	not authz.allow with input as {}
}

test_denies_unknown_action if {
	not authz.allow with input as {"principal": ledger_reader, "action": "ledger.drop", "resource": {"type": "account"}}
	authz.reasons["unknown action"] with input as {"principal": ledger_reader, "action": "ledger.drop", "resource": {"type": "account"}}
}

test_ledger_read_scope_reads if {
	authz.allow with input as {"principal": ledger_reader, "action": "ledger.accounts.read", "resource": {"type": "account", "id": "acc_1", "owner": null}}
}

test_ledger_read_scope_cannot_post if {
	not authz.allow with input as {"principal": ledger_reader, "action": "ledger.transactions.create", "resource": {"type": "transaction", "id": null, "owner": null}}
	authz.reasons["missing scope"] with input as {"principal": ledger_reader, "action": "ledger.transactions.create", "resource": {"type": "transaction", "id": null, "owner": null}}
}

test_ledger_batch_needs_the_write_scope if {
	authz.allow with input as {"principal": {"client_id": "cli_w", "scopes": ["ledger:write"]}, "action": "ledger.transactions.batch", "resource": {"type": "ledger_transaction", "id": null, "owner": null}}
	not authz.allow with input as {"principal": ledger_reader, "action": "ledger.transactions.batch", "resource": {"type": "ledger_transaction", "id": null, "owner": null}}
}

test_owner_reads_own_payment if {
	authz.allow with input as {"principal": payments_client, "action": "payments.read", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_a"}}
}

test_other_client_cannot_read_payment if {
	not authz.allow with input as {"principal": payments_client, "action": "payments.read", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_b"}}
	authz.reasons["not the owner"] with input as {"principal": payments_client, "action": "payments.read", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_b"}}
}

test_anonymous_is_denied if {
	not authz.allow with input as {"principal": null, "action": "ledger.accounts.read", "resource": {"type": "account"}}
}

kyc_client := {"client_id": "cli_a", "scopes": ["kyc:write"]}

admin_client := {"client_id": "cli_admin", "scopes": ["clients:admin"]}

test_owner_reads_own_customer if {
	authz.allow with input as {"principal": kyc_client, "action": "customers.read", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_a"}}
}

test_other_client_cannot_read_or_decide_kyc_of_customer if {
	not authz.allow with input as {"principal": kyc_client, "action": "customers.read", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_b"}}
	not authz.allow with input as {"principal": kyc_client, "action": "customers.kyc", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_b"}}
	authz.reasons["not the owner"] with input as {"principal": kyc_client, "action": "customers.kyc", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_b"}}
}

test_kyc_scope_cannot_administer_clients if {
	not authz.allow with input as {"principal": kyc_client, "action": "clients.create", "resource": {"type": "client", "id": null, "owner": null}}
}

test_admin_manages_clients_and_their_keys if {
	authz.allow with input as {"principal": admin_client, "action": "clients.create", "resource": {"type": "client", "id": null, "owner": null}}
	authz.allow with input as {"principal": admin_client, "action": "clients.keys.create", "resource": {"type": "client", "id": "cli_x", "owner": null}}
	authz.allow with input as {"principal": admin_client, "action": "clients.disable", "resource": {"type": "client", "id": "cli_x", "owner": null}}
}

test_admin_cannot_read_customers_without_kyc_scope if {
	not authz.allow with input as {"principal": admin_client, "action": "customers.read", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_admin"}}
}

refunds_client := {"client_id": "cli_a", "scopes": ["refunds:write"]}

payouts_client := {"client_id": "cli_a", "scopes": ["payouts:write"]}

test_owner_captures_voids_and_refunds_own_payment if {
	authz.allow with input as {"principal": payments_client, "action": "payments.capture", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_a"}}
	authz.allow with input as {"principal": payments_client, "action": "payments.void", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_a"}}
	authz.allow with input as {"principal": refunds_client, "action": "refunds.create", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_a"}}
}

test_other_client_cannot_capture_or_refund_payment if {
	not authz.allow with input as {"principal": payments_client, "action": "payments.capture", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_b"}}
	not authz.allow with input as {"principal": refunds_client, "action": "refunds.create", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_b"}}
}

test_payments_scope_cannot_refund_or_pay_out if {
	not authz.allow with input as {"principal": payments_client, "action": "refunds.create", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_a"}}
	not authz.allow with input as {"principal": payments_client, "action": "payouts.create", "resource": {"type": "payout", "id": null, "owner": null}}
}

test_payout_owner_reads_and_other_client_does_not if {
	authz.allow with input as {"principal": payouts_client, "action": "payouts.create", "resource": {"type": "payout", "id": null, "owner": null}}
	authz.allow with input as {"principal": payouts_client, "action": "payouts.read", "resource": {"type": "payout", "id": "po_1", "owner": "cli_a"}}
	not authz.allow with input as {"principal": payouts_client, "action": "payouts.read", "resource": {"type": "payout", "id": "po_1", "owner": "cli_b"}}
}

test_webhook_endpoint_creation_needs_payments_write if {
	authz.allow with input as {"principal": payments_client, "action": "webhook_endpoints.create", "resource": {"type": "webhook_endpoint", "id": null, "owner": null}}
	not authz.allow with input as {"principal": refunds_client, "action": "webhook_endpoints.create", "resource": {"type": "webhook_endpoint", "id": null, "owner": null}}
}

test_other_clients_owned_resource_is_concealed_whatever_the_scopes if {
	for_other := {"principal": {"client_id": "cli_b", "scopes": []}, "action": "customers.read", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_a"}}
	not authz.allow with input as for_other
	authz.conceal with input as for_other
}

test_missing_owned_resource_is_concealed_like_another_clients if {
	missing := {"principal": kyc_client, "action": "customers.kyc", "resource": {"type": "customer", "id": "cus_404", "owner": null}}
	not authz.allow with input as missing
	authz.conceal with input as missing
}

test_owner_without_scope_is_refused_but_not_concealed if {
	own := {"principal": {"client_id": "cli_a", "scopes": []}, "action": "customers.read", "resource": {"type": "customer", "id": "cus_1", "owner": "cli_a"}}
	not authz.allow with input as own
	not authz.conceal with input as own
}

test_create_of_owned_resource_needs_no_owner if {
	authz.allow with input as {"principal": kyc_client, "action": "customers.create", "resource": {"type": "customer", "id": null, "owner": null}}
}

test_ledger_resources_are_never_concealed if {
	not authz.conceal with input as {"principal": {"client_id": "cli_b", "scopes": ["ledger:read"]}, "action": "ledger.accounts.read", "resource": {"type": "account", "id": "acc_1", "owner": null}}
}

# The document the API queries carries exactly the verdict, for an allow, a refusal and a
# concealed resource alike.
test_decision_is_the_verdict_alone_when_allowed if {
	authz.decision == {"allow": true, "conceal": false, "reasons": set()} with input as {"principal": ledger_reader, "action": "ledger.accounts.read", "resource": {"type": "account", "id": "acc_1", "owner": null}}
}

test_decision_names_the_reason_when_refused if {
	authz.decision == {"allow": false, "conceal": false, "reasons": {"missing scope"}} with input as {"principal": ledger_reader, "action": "ledger.transactions.create", "resource": {"type": "transaction", "id": null, "owner": null}}
}

test_decision_conceals_another_clients_resource if {
	d := authz.decision with input as {"principal": payments_client, "action": "payments.read", "resource": {"type": "payment", "id": "pay_1", "owner": "cli_b"}}
	d.allow == false
	d.conceal == true
	d.reasons == {"not the owner"}
}

test_decision_denies_an_empty_input if {
	d := authz.decision with input as {}
	d.allow == false
	d.conceal == false
}
