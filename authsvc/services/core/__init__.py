"""Shared building blocks of the flows: sessions, known devices, failure budgets, contacts, the SMS
policy, client credentials."""
