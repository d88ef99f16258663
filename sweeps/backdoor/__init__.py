"""``toymodels-backdoor`` (``cli``): backdoor detectors (``detect``) and their test sets and scores
(``evaluate``), numpy, scored on a stored sweep's models."""
