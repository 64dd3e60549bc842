"""The pytest plugin proper (``plugin``), registered by the ``pytest11``
entry point ``_tracedsync_pytestplugin`` only when a run asks for it."""
