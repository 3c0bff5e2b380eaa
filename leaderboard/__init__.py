"""cgbench.leaderboard: submissions scored by ``cgbench.eval``, result records, a static site.

- :mod:`~cgbench.leaderboard.submission`: the ``cgbench-submission/1`` format and its checks;
- :mod:`~cgbench.leaderboard.scoring`: submissions and built-in baselines -> result records;
- :mod:`~cgbench.leaderboard.site`: result records -> HTML/SVG/JSON site (Jinja2, autoescaped).

CLI: ``cgbench leaderboard submit DIR --results RESULTS``, ``cgbench leaderboard baselines``,
``cgbench leaderboard build RESULTS --out SITE [--publish DIR]``. See docs/leaderboard.md.
"""

from cgbench.leaderboard.scoring import ScoredEntry, score_baselines, score_submission
from cgbench.leaderboard.site import SiteReport, build_site, collect_entries
from cgbench.leaderboard.submission import SubmissionError, load_submission

__all__ = [
    "ScoredEntry",
    "SiteReport",
    "SubmissionError",
    "build_site",
    "collect_entries",
    "load_submission",
    "score_baselines",
    "score_submission",
]
