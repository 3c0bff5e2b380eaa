"""cgbench.eval"""
