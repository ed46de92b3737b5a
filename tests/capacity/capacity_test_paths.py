"""Paths the capacity tests share (a uniquely named module: every test folder has a conftest)."""

from pathlib import Path

FIXTURES = Path(__file__).with_name("fixtures")
REPO = Path(__file__).resolve().parents[2]
