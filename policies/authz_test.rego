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
