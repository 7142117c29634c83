"""The demo: a simulated shop whose customers' true personas are known (``simulate``), and the
scores of the segments against that truth (``evaluate``). Production code does not import it;
the CLI (``segmentation demo``, ``evaluate``, ``replay``), the tests and the benchmarks do.
"""
