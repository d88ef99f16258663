"""Closed forms the figures are read against (numpy only): the n=2, m=1 ReLU model's hand-built
solutions and phase boundaries (``n2m1``), its exact expected loss (``n2m1_exact``) and locally
relaxed solutions (``n2m1_relaxed``), and Scherlis et al.'s quadratic capacity model (``capacity``)."""
