"""The task API (FastAPI)."""
