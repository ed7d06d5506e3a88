"""The checkout's own tools, never shipped in a plugin: the demo (demo.py), the digits dataset and recipe the demo,
tests and benchmarks share (digits.py), installing and packaging the plugins (plugins.py), the plugin READMEs'
parameter tables (parameter_tables.py) and the README's pictures (pictures.py). Run each with python -m."""
