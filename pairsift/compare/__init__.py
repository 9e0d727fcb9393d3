"""Does a selection help on this data, at what label budget? Held-out split, arms x budgets x
seeds, learners, statistics, the label-efficiency curve.

=============  =====================================================================
split.py       `pairsift split`: held-out prompts by a seeded hash (stable under new data)
arms.py        what is compared: strategies with options (run in memory), saved subsets
draws.py       fair budgets: the same prompts per-prompt, own-selection draws otherwise
learners.py    reward-head (Bradley–Terry on embeddings), dpo (`train` + `eval`)
runner.py      validate everything, then the arm x budget x seed loop; `compare()`
report.py      mean, 95% t-interval, paired differences; the table
plot.py        the curve (matplotlib's object-oriented API)
manifest.py    what was run on what
=============  =====================================================================
"""
