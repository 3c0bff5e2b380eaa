"""cgbench.leaderboard"""
