"""cgbench.loaders"""
