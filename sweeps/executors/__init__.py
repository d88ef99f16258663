"""Where chunks run: the executor interface and the in-process executor (``base``), and Ray
(``ray_executor``)."""
