package moneypath.authz_risk_test

import rego.v1

import data.moneypath.authz

reviewer := {"client_id": "cli_ops", "scopes": ["risk:read", "risk:write"]}

risk_reader := {"client_id": "cli_ops", "scopes": ["risk:read"]}

payments_client := {"client_id": "cli_shop", "scopes": ["payments:read", "payments:write"]}

review := {"type": "risk_review", "id": "rvw_1", "owner": null}

queue := {"type": "risk_review", "id": null, "owner": null}

test_risk_read_scope_lists_and_reads_reviews if {
	authz.allow with input as {"principal": risk_reader, "action": "risk.reviews.list", "resource": queue}
	authz.allow with input as {"principal": risk_reader, "action": "risk.reviews.read", "resource": review}
}

test_risk_read_scope_cannot_decide_a_review if {
	not authz.allow with input as {"principal": risk_reader, "action": "risk.reviews.decide", "resource": review}
	authz.reasons["missing scope"] with input as {"principal": risk_reader, "action": "risk.reviews.decide", "resource": review}
}

test_risk_write_scope_decides_a_review if {
	authz.allow with input as {"principal": reviewer, "action": "risk.reviews.decide", "resource": review}
}

test_payments_client_cannot_see_or_decide_its_own_reviews if {
	not authz.allow with input as {"principal": payments_client, "action": "risk.reviews.list", "resource": queue}
	not authz.allow with input as {"principal": payments_client, "action": "risk.reviews.decide", "resource": review}
}

test_risk_decision_document_is_not_an_authorization if {
	# The risk package answers about payments, never about requests.
	not authz.allow with input as {"principal": reviewer, "action": "risk.decision", "resource": review}
}
