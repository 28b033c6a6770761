# Whole-run verdict: a run passes only when every gate it ran passed AND every gate's result
# was written to the evidence service. A run without evidence never passes, except a
# report-only run (a pull request's: it holds no evidence credentials and writes nothing),
# whose verdict is only the gates' and which can back no promotion.
package moneypath.pipeline.run

import rego.v1

report_only if input.mode == "report-only"

violations contains "the run ran no gate" if {
	count(object.get(input, "gates", [])) == 0
}

violations contains msg if {
	some gate in input.gates
	gate.result != "pass"
	msg := sprintf("gate %s: %s", [gate.gate, gate.result])
}

violations contains msg if {
	not report_only
	some gate in input.gates
	not evidence_id(object.get(gate, "evidence_id", null))
	msg := sprintf("gate %s: no evidence record was written", [gate.gate])
}

violations contains msg if {
	some gate, seen in {g.gate: n | some g in input.gates; n := count([x | some x in input.gates; x.gate == g.gate])}
	seen > 1
	msg := sprintf("gate %s ran %d times", [gate, seen])
}

# The second evaluation, after the run record itself was submitted, says whether it landed.
violations contains "the run record was not written to the evidence service" if {
	not report_only
	"run_evidence_id" in object.keys(input)
	not evidence_id(input.run_evidence_id)
}

# An evidence id is a non-empty string; null (nothing written) must not count as one.
evidence_id(value) if {
	is_string(value)
	count(value) > 0
}

default result := "fail"

result := "pass" if count(violations) == 0

# Evidence that a report-only run somehow wrote would be a breach of the mode, not a bonus.
violations contains msg if {
	report_only
	some gate in input.gates
	evidence_id(object.get(gate, "evidence_id", null))
	msg := sprintf("gate %s: a report-only run wrote evidence", [gate.gate])
}

decision := {"result": result, "violations": sort([v | some v in violations])}
