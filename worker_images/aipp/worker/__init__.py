"""The queue worker (steps 4-8 of the task flow): `python -m aipp.worker`."""
