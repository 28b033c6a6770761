"""moneypath: payments and double-entry ledger platform."""
