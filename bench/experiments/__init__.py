"""One-off measurements, each recorded in BENCHMARKS.md with the command that made it
(``python -m bench.experiments.<name>``), and the apps and gunicorn settings they serve;
no make target runs them."""
