"""How gunicorn runs the service: what its hooks install in the workers."""
