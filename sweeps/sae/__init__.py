"""SAE sweeps: the ``sae:`` section (``config``), SAEs → chunks (``plan``), a chunk's program and rows
(``execute``), the two sources (``worlds``, ``toy``), and ``toymodels-sae`` (``cli``)."""
