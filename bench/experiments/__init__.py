"""One-off measurements, each recorded in BENCHMARKS.md with the command that made it
(``python -m bench.experiments.<name>``), and the apps and gunicorn settings they serve;
not run by make targets. ``constant_app`` is also served by bench/bench_workers.py
(``make bench``) and bench/compare_mlserver.py (``make bench-compare``)."""
