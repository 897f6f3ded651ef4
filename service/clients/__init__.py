"""Administration of platform clients and rate plans (``admin:clients``)."""
