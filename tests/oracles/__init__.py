"""Reference implementations that only tests and benchmarks call.

Each is a plain, batch form of what the daemon computes another way (streaming sums, a fixed
reference, merged bins) or a figure the daemon does not export; tests check the product
functions in `monitor/stats/` against them. Product code never imports from here.
"""
