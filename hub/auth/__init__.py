"""Principals, clients, access tokens, scopes, roles, rate limits and the audit trail."""
