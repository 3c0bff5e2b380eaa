"""cgbench.cg"""
