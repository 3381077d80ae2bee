"""The ollamatopo benchmark (issue 4): `python -m bench` from the repository root.

It brings up the seed topology with offline stand-ins under ollamatopo and under docker
compose, measures readiness with its own poller, computes the critical-path bound in the
same run, scales one phase to hundreds of containers against the engine's own parallel
throughput, and writes a table and a JSON file under bench/results/.
"""
