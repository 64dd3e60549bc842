"""The ``tracedsync`` command line: ``main`` (arguments, commands), ``run``
(tracing an unmodified program), ``summary`` and ``timeline`` (what a trace
says, as text and as a Chrome trace), ``tracefile`` (reading trace files
back) and ``demo`` (the teaching programs)."""
