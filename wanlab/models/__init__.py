"""Models: the built-in ones (:mod:`~wanlab.models.registry`, :mod:`~wanlab.models.tiny`), which model a
name means (:mod:`~wanlab.models.resolution`), what a model is without loading it
(:mod:`~wanlab.models.identity`) and loading its weights (:mod:`~wanlab.models.loading`)."""
