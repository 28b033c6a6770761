# Which writers' evidence counts. Any client with evidence:write may add records, but a
# record decides an OSCAL finding or a promotion only when its verified writer
# (submitted_by.client_id, set by the server) is trusted for the record's type.
#
# Two sources, read as one:
#   data.trust.evidence_submitters: {type pattern: [client ids]}, the reviewed document
#     policies/trust/evidence_submitters.json (the operator lists the production CI
#     pipeline's and ledger worker's client ids there);
#   data.trust.registered_evidence_submitters: {client id: [type patterns]}, written at
#     run time through OPA's data API by `evidence trust register` (dev stack, tests, CI's
#     own stack). Production OPA loads signed bundles, which refuse such writes.
# Patterns are globs over dot-separated types: `ci.*` is one segment, `ci.**` any number.
# A type that no pattern names is trusted from nobody: deny by default.
#
# Writes: data.trust.exclusive_evidence_types (same reviewed document) lists the types
# only their trusted writers may append at all; the evidence service asks `admit` before
# it writes. `ledger.checkpoint` is one: `verify` compares the ledger with those anchors,
# so no other evidence writer may even add a look-alike, and the worker's anchor client is
# trusted for exactly that type and no other (least privilege).
package moneypath.evidence.trust

import rego.v1

default reviewed := {}

reviewed := data.trust.evidence_submitters

default registered := {}

registered := data.trust.registered_evidence_submitters

trusted(record_type, client_id) if {
	some pattern, client_ids in reviewed
	glob.match(pattern, ["."], record_type)
	client_id in client_ids
}

trusted(record_type, client_id) if {
	some pattern in registered[client_id]
	glob.match(pattern, ["."], record_type)
}

verdict(pair) if {
	trusted(pair.type, pair.client_id)
} else := false

# For input {"pairs": [{"type", "client_id"}, ...]}: one boolean per pair, in order.
verdicts := [verdict(pair) | some pair in input.pairs]

default exclusive_types := []

exclusive_types := data.trust.exclusive_evidence_types

exclusive(record_type) if {
	some pattern in exclusive_types
	glob.match(pattern, ["."], record_type)
}

# For input {"type", "client_id"}: may this writer append a record of this type?
default admit := false

admit if not exclusive(input.type)

admit if trusted(input.type, input.client_id)
