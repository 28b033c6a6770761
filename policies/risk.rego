# Payment risk rules: approve, review or decline, with reason codes.
#
# The service sends the payment, the customer (country, KYC tier, age in days) and the
# customer's velocity counters per window, counted before this payment. Every limit is
# data in this file, so changing one is a policy change that passes the `opa test` gate.
# A malformed input is never approved: it goes to review with `invalid_input`.
package moneypath.risk

import rego.v1

# Minor units per currency: JPY has no minor unit, so its numbers are in yen.
limits := {
	# The largest single payment, by KYC tier. Above it: decline.
	"amount_minor": {
		"basic": {"EUR": 100000, "USD": 100000, "GBP": 100000, "JPY": 150000},
		"full": {"EUR": 1000000, "USD": 1000000, "GBP": 1000000, "JPY": 1500000},
	},
	# A customer younger than `age_days` gets lower limits; above them: review.
	"new_customer": {
		"age_days": 30,
		"amount_minor": {"EUR": 25000, "USD": 25000, "GBP": 25000, "JPY": 40000},
		"count": {"1h": 3, "24h": 10},
	},
	# Per customer per window, this payment included. Above them: review.
	"velocity": {
		"1h": {
			"count": 5,
			"amount_minor": {"EUR": 300000, "USD": 300000, "GBP": 300000, "JPY": 450000},
		},
		"24h": {
			"count": 20,
			"amount_minor": {"EUR": 1000000, "USD": 1000000, "GBP": 1000000, "JPY": 1500000},
		},
	},
}

# ISO 3166-1 alpha-2 codes of countries we do not serve. Payments from them: decline.
blocked_countries := {"CU", "IR", "KP", "SY"}

kyc_tiers := {"none", "basic", "full"}

decision := {"outcome": outcome, "reasons": sort([reason | some reason in reasons])}

reasons := decline_reasons | review_reasons

outcome := "decline" if {
	count(decline_reasons) > 0
} else := "review" if {
	count(review_reasons) > 0
} else := "approve"

# ---- input shape ------------------------------------------------------------------------

valid_input if {
	is_number(input.payment.amount_minor)
	input.payment.amount_minor > 0
	is_string(input.payment.currency)
	is_string(input.customer.country)
	kyc_tiers[input.customer.kyc_tier]
	is_number(input.customer.age_days)
	every window, _ in limits.velocity {
		is_number(input.velocity[window].count)
		is_number(input.velocity[window].amount_minor)
	}
}

amount := input.payment.amount_minor

currency := input.payment.currency

tier := input.customer.kyc_tier

new_customer if input.customer.age_days < limits.new_customer.age_days

# ---- decline ----------------------------------------------------------------------------

decline_reasons contains "kyc_not_verified" if {
	valid_input
	tier == "none"
}

decline_reasons contains "country_blocked" if {
	valid_input
	blocked_countries[input.customer.country]
}

decline_reasons contains "amount_over_tier_limit" if {
	valid_input
	amount > limits.amount_minor[tier][currency]
}

# ---- review -----------------------------------------------------------------------------

review_reasons contains "invalid_input" if not valid_input

review_reasons contains "currency_not_configured" if {
	valid_input
	not limits.amount_minor.full[currency]
}

review_reasons contains "new_customer_amount" if {
	valid_input
	new_customer
	amount > limits.new_customer.amount_minor[currency]
}

review_reasons contains sprintf("velocity_count_%s", [window]) if {
	valid_input
	some window, _ in limits.velocity
	input.velocity[window].count + 1 > count_limit(window)
}

review_reasons contains sprintf("velocity_amount_%s", [window]) if {
	valid_input
	some window, rule in limits.velocity
	input.velocity[window].amount_minor + amount > rule.amount_minor[currency]
}

count_limit(window) := limits.new_customer.count[window] if new_customer

count_limit(window) := limits.velocity[window].count if not new_customer
