"""Every figure ``toymodels-figures`` draws, one module per family of figures, read from a stored
sweep's table alone."""
