"""cgbench.benchmarks"""
