"""Shared test helpers: a throwaway PostgreSQL and real Athena servers on loopback."""
