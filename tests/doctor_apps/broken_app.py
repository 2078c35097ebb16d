"""Fails at import, as an app with a missing setting does."""

raise RuntimeError("DATABASE_URL is not set\n(see the README)")
