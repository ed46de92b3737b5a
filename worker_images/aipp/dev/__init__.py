"""Helpers for `make dev` only; nothing here runs in AWS."""
