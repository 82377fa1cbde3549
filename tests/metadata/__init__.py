"""Metadata store backend tests (SQLite and PostgreSQL)."""
