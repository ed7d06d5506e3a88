"""The benchmarks, one tool: `python -m benchmarks <command>` (from the checkout, after `make install`).

Each command races its contenders in one process, interleaved, prints medians and ratios and writes a JSON
report (date, machine, versions first) to benchmarks/results/<command>.json; the runs the docs cite are kept in
benchmarks/reference/. Weights are random unless a command takes --torch-home: speed does not depend on them.
"""
