"""Upload Lambda: checks an uploaded object and queues its task."""
