"""gunicorn.conf.py without its ``post_request`` hook: the server as it was before each
request gave the event loop a turn, for bench/experiments/fairness.py's side-by-side runs only."""
import runpy
from pathlib import Path

globals().update({name: value for name, value in
                  runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py")).items()
                  if name != "post_request" and not name.startswith("__")})
