# API authorization: deny by default. An action is allowed when the caller holds the
# action's scope and, for owned resources, owns the resource.
package moneypath.authz

import rego.v1

default allow := false

default conceal := false

# What the API asks OPA for each request: the verdict alone. Querying the whole package
# made OPA evaluate, serialise and decision-log every rule here (the action table too), at
# about twice the CPU of this one document (issue 16).
decision := {"allow": allow, "conceal": conceal, "reasons": reasons}

# The scope each action needs. Domains add their actions here as they gain endpoints.
action_scopes := {
	"clients.create": "clients:admin",
	"clients.read": "clients:admin",
	"clients.keys.create": "clients:admin",
	"clients.disable": "clients:admin",
	"customers.create": "kyc:write",
	"customers.kyc": "kyc:write",
	"customers.read": "kyc:write",
	"ledger.accounts.create": "ledger:write",
	"ledger.accounts.read": "ledger:read",
	"ledger.entries.read": "ledger:read",
	"ledger.transactions.create": "ledger:write",
	"ledger.transactions.batch": "ledger:write",
	"ledger.transactions.post": "ledger:write",
	"ledger.transactions.void": "ledger:write",
	"ledger.transactions.reverse": "ledger:write",
	"ledger.transactions.read": "ledger:read",
	"ledger.verify": "ledger:read",
	"payments.create": "payments:write",
	"payments.capture": "payments:write",
	"payments.void": "payments:write",
	"payments.read": "payments:read",
	"refunds.create": "refunds:write",
	"payouts.create": "payouts:write",
	"payouts.read": "payouts:write",
	"webhook_endpoints.create": "payments:write",
	"risk.reviews.list": "risk:read",
	"risk.reviews.read": "risk:read",
	"risk.reviews.decide": "risk:write",
	"recon.runs.create": "recon:write",
	"recon.runs.read": "recon:read",
	"recon.exceptions.list": "recon:read",
	"recon.exceptions.resolve": "recon:write",
	"evidence.create": "evidence:write",
	"evidence.read": "evidence:read",
	"evidence.list": "evidence:read",
	"evidence.checkpoints.read": "evidence:read",
	"evidence.proofs.read": "evidence:read",
	"evidence.keys.read": "evidence:read",
	"evidence.exports.in_toto": "evidence:read",
	"evidence.exports.oscal": "evidence:read",
	"evidence.exports.bundle": "evidence:read",
	"evidence.attachments.create": "evidence:write",
	"evidence.attachments.read": "evidence:read",
}

# Resources that belong to one API client: only that client may touch them, and to any
# other client they do not exist (404 not_found, never 403, so ids cannot be probed).
#
# To make a new resource owned (payments, refunds, payouts, webhook endpoints):
#   1. list its resource type here;
#   2. give every Endpoint whose path names one (`{id}`) that resource_type and an
#      `owner_of(session, id)` lookup returning the creating client's id, or None when no
#      such resource exists (see app/identity/customers.py owner_of);
#   3. store the creating client id (`principal.client_id`) with the resource.
# The pipeline then sends {type, id, owner} here, and `conceal` turns a refusal into 404.
# Ledger resources are deliberately not owned: ledger clients are the operator's own
# services and see the whole ledger (README, "Who sees what").
owned_types := {"customer", "payment", "refund", "payout", "webhook_endpoint"}

has_scope if {
	some scope in input.principal.scopes
	scope == action_scopes[input.action]
}

owner_ok if not owned_types[input.resource.type]

# A create names no existing resource yet: there is nothing to own.
owner_ok if {
	owned_types[input.resource.type]
	object.get(input.resource, "id", null) == null
}

owner_ok if {
	owned_types[input.resource.type]
	input.resource.owner == input.principal.client_id
}

allow if {
	input.principal.client_id
	has_scope
	owner_ok
}

# A named owned resource that is not the caller's, or does not exist (owner null): the
# answer is 404 whatever the caller's scopes, so "someone else's" and "missing" look alike.
conceal if {
	owned_types[input.resource.type]
	object.get(input.resource, "id", null) != null
	input.resource.owner != input.principal.client_id
}

reasons contains "unknown action" if not action_scopes[input.action]

reasons contains "missing scope" if {
	action_scopes[input.action]
	not has_scope
}

reasons contains "not the owner" if not owner_ok
