"""authsvc: a hardened two-factor authentication service."""
