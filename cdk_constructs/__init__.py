"""Our L3 constructs (the brief's `constructs/`, renamed so it does not shadow the library)."""
