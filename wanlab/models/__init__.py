"""Models: the built-in ones (:mod:`~wanlab.models.registry`, :mod:`~wanlab.models.tiny`), what a model
is without loading it (:mod:`~wanlab.models.identity`) and loading its weights
(:mod:`~wanlab.models.loading`)."""
