"""The operator's web console (server.py): reads what the workers write to Redis."""
