"""Second factors: checking them (the shared lock and one outcome step) and each method's own
rules."""
