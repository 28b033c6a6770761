package moneypath.risk_test

import rego.v1

import data.moneypath.risk

# A verified customer with full KYC, a year old, in Germany, with no recent payments.
clean := {
	"payment": {"id": "pay_1", "amount_minor": 10000, "currency": "EUR"},
	"customer": {"id": "cus_1", "country": "DE", "kyc_tier": "full", "age_days": 365},
	"velocity": {
		"1h": {"count": 0, "amount_minor": 0},
		"24h": {"count": 0, "amount_minor": 0},
	},
}

with_payment(field, value) := object.union(clean, {"payment": object.union(clean.payment, {field: value})})

with_customer(field, value) := object.union(clean, {"customer": object.union(clean.customer, {field: value})})

with_velocity(window, count, amount) := object.union(clean, {"velocity": object.union(clean.velocity, {window: {"count": count, "amount_minor": amount}})})

test_approves_a_clean_payment_when_no_rule_fires if {
	risk.decision == {"outcome": "approve", "reasons": []} with input as clean
}

test_declines_when_kyc_is_not_verified if {
	risk.decision == {"outcome": "decline", "reasons": ["kyc_not_verified"]} with input as with_customer("kyc_tier", "none")
}

test_declines_when_country_is_blocked if {
	risk.decision == {"outcome": "decline", "reasons": ["country_blocked"]} with input as with_customer("country", "KP")
}

test_approves_at_exactly_the_basic_tier_limit if {
	basic := object.union(with_customer("kyc_tier", "basic"), {"payment": {"amount_minor": 100000}})
	risk.decision.outcome == "approve" with input as basic
}

test_declines_when_amount_exceeds_the_basic_tier_limit if {
	basic := object.union(with_customer("kyc_tier", "basic"), {"payment": {"amount_minor": 100001}})
	risk.decision == {"outcome": "decline", "reasons": ["amount_over_tier_limit"]} with input as basic
}

test_full_tier_allows_what_basic_declines_when_kyc_is_full if {
	risk.decision.outcome == "approve" with input as with_payment("amount_minor", 100001)
}

test_declines_when_amount_exceeds_the_full_tier_limit if {
	big := with_payment("amount_minor", 1000001)
	risk.decision.outcome == "decline" with input as big
	"amount_over_tier_limit" in risk.decision.reasons with input as big
}

test_tier_limits_follow_the_currency_when_currency_is_jpy if {
	jpy := object.union(with_customer("kyc_tier", "basic"), {"payment": {"currency": "JPY", "amount_minor": 150000}})
	risk.decision.outcome == "approve" with input as jpy
	over := object.union(jpy, {"payment": {"amount_minor": 150001}})
	risk.decision.outcome == "decline" with input as over
}

test_reviews_when_a_new_customer_pays_above_the_new_customer_limit if {
	young := object.union(with_customer("age_days", 3), {"payment": {"amount_minor": 25001}})
	risk.decision == {"outcome": "review", "reasons": ["new_customer_amount"]} with input as young
	at_limit := object.union(young, {"payment": {"amount_minor": 25000}})
	risk.decision.outcome == "approve" with input as at_limit
}

test_old_customer_pays_the_same_amount_when_older_than_the_new_customer_age if {
	old := object.union(with_customer("age_days", 30), {"payment": {"amount_minor": 25001}})
	risk.decision.outcome == "approve" with input as old
}

test_reviews_when_hourly_count_would_exceed_the_limit if {
	risk.decision.outcome == "approve" with input as with_velocity("1h", 4, 40000)
	risk.decision == {"outcome": "review", "reasons": ["velocity_count_1h"]} with input as with_velocity("1h", 5, 50000)
}

test_reviews_when_daily_count_would_exceed_the_limit if {
	risk.decision.outcome == "approve" with input as with_velocity("24h", 19, 0)
	risk.decision.reasons == ["velocity_count_24h"] with input as with_velocity("24h", 20, 0)
}

test_new_customers_get_a_lower_count_limit_when_younger_than_the_limit if {
	young := object.union(with_velocity("1h", 3, 0), {"customer": {"age_days": 1}})
	risk.decision.reasons == ["velocity_count_1h"] with input as young
	old := with_velocity("1h", 3, 0)
	risk.decision.outcome == "approve" with input as old
}

test_reviews_when_daily_amount_would_exceed_the_limit if {
	risk.decision.outcome == "approve" with input as with_velocity("24h", 1, 990000)
	over := object.union(with_velocity("24h", 1, 990001), {"payment": {"amount_minor": 10000}})
	risk.decision.reasons == ["velocity_amount_24h"] with input as over
}

test_reviews_when_hourly_amount_would_exceed_the_limit if {
	risk.decision.reasons == ["velocity_amount_1h"] with input as with_velocity("1h", 1, 290001)
}

test_decline_wins_and_all_reasons_are_given_when_several_rules_fire if {
	both := object.union(with_velocity("1h", 9, 0), {"customer": {"country": "IR", "kyc_tier": "none"}})
	risk.decision == {
		"outcome": "decline",
		"reasons": ["country_blocked", "kyc_not_verified", "velocity_count_1h"],
	} with input as both
}

test_reviews_when_currency_has_no_limits if {
	risk.decision == {"outcome": "review", "reasons": ["currency_not_configured"]} with input as with_payment("currency", "CHF")
}

test_reviews_when_input_is_empty if {
	risk.decision == {"outcome": "review", "reasons": ["invalid_input"]} with input as {}
}

test_reviews_when_a_velocity_window_is_missing if {
	no_velocity := object.remove(clean, ["velocity"])
	risk.decision.reasons == ["invalid_input"] with input as no_velocity
	only_hour := object.union(no_velocity, {"velocity": {"1h": {"count": 0, "amount_minor": 0}}})
	risk.decision.reasons == ["invalid_input"] with input as only_hour
}

test_reviews_when_amount_is_not_a_positive_number if {
	risk.decision.reasons == ["invalid_input"] with input as with_payment("amount_minor", "100")
	risk.decision.reasons == ["invalid_input"] with input as with_payment("amount_minor", 0)
	risk.decision.reasons == ["invalid_input"] with input as with_payment("amount_minor", -5)
}

test_reviews_when_kyc_tier_is_unknown if {
	risk.decision.reasons == ["invalid_input"] with input as with_customer("kyc_tier", "platinum")
}

test_every_velocity_window_has_limits_for_every_configured_currency if {
	every _, rule in risk.limits.velocity {
		every code, _ in risk.limits.amount_minor.full {
			is_number(rule.amount_minor[code])
			risk.limits.amount_minor.basic[code] <= risk.limits.amount_minor.full[code]
			risk.limits.new_customer.amount_minor[code] <= risk.limits.amount_minor.basic[code]
		}
	}
	every window, count_limit in risk.limits.new_customer.count {
		count_limit <= risk.limits.velocity[window].count
	}
}
