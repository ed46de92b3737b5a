"""AI Processing Platform runtime, shared by the task API, the workers and the upload Lambda."""
