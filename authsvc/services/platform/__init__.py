"""The service's machinery: the outbox, the audit chain, signing keys, password hashing, messages,
health and re-encryption."""
