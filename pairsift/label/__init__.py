"""Annotation: people label the pairs a subset selected, and their labels orient those pairs.

``select -> label -> train``. Labels live in the store's ``labels`` table (one row per label an
annotator gave; :mod:`.table`), written by the web page (:mod:`.server`, ``pairsift label
serve``) or read from files (:mod:`.importing`, Argilla / Label Studio via :mod:`.formats`).
:mod:`.resolve` turns them into one orientation per pair (majority), :mod:`.stats` measures the
annotators (counts, time, agreement, agreement against the pair's cosine).

This package reads subsets through :mod:`pairsift.select` and never imports training.
"""
