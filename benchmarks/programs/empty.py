"""An empty program: ``tracedsync run`` on it measures start-up alone."""
