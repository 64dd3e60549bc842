"""The explorer (:func:`tracedsync.explore`): ``runs`` (explorations,
minimising, replay), ``scheduler`` (the controlled scheduler's runtime) and
``schedules`` (the strategies choosing the interleavings).  The primitives
never import it: they reach it through :mod:`tracedsync._control`."""
