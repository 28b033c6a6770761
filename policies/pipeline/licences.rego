# The licences a runtime dependency (what ships in the image) may carry. A package whose
# declared licence is none of these fails the licences gate unless a waiver covers it.
# Strong copyleft (GPL, AGPL) is not on the list: it would bind the product's own licence.
package moneypath.pipeline.licences

import rego.v1

# Names as packages declare them: SPDX identifiers and the trove classifiers' wording.
allowed := {
	"0BSD",
	"Apache-2.0",
	"Apache Software License",
	"BSD",
	"BSD License",
	"BSD-2-Clause",
	"BSD-3-Clause",
	"3-Clause BSD License",
	"ISC",
	"ISC License (ISCL)",
	"MIT",
	"MIT License",
	"MIT-0",
	"MPL-2.0",
	"Mozilla Public License 2.0 (MPL 2.0)",
	"PSF-2.0",
	"Python Software Foundation License",
	"Unlicense",
	"The Unlicense (Unlicense)",
	# Weak copyleft, used unmodified as a separate library (psycopg): allowed.
	"LGPL-3.0-only",
	"LGPL-3.0-or-later",
	"GNU Lesser General Public License v3 (LGPLv3)",
}

# Packages whose metadata declares no licence, with the licence a reviewer found in the
# package's own licence file. Reviewed, like every policy change.
reviewed := {
	# pgserver 0.1.4 ships dist-info/LICENSE: Apache License, Version 2.0.
	"pgserver": "Apache-2.0",
}

# A declared licence is acceptable when any of its alternatives is: alternatives are the
# `; `-separated classifiers and the operands of an SPDX `OR`; within one alternative every
# `AND` operand must be allowed.
acceptable(licence) if {
	some option in alternatives(licence)
	every term in split(option, " AND ") {
		allowed_term(trim_space(term))
	}
}

# A classifier's own name may end in a bracket ("... (MPL 2.0)"); an SPDX operand may
# carry the brackets of a grouped expression.
allowed_term(term) if term in allowed

allowed_term(term) if trim(term, "()") in allowed

alternatives(licence) := {trim_space(option) |
	some part in split(licence, "; ")
	some option in split(part, " OR ")
}

# The licence to judge for a package: the reviewed one when its metadata has none.
effective(pkg) := reviewed[pkg.name] if {
	object.get(pkg, "licence", "UNKNOWN") in {"UNKNOWN", "", null}
} else := object.get(pkg, "licence", "UNKNOWN")
