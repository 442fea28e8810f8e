"""shardrun's version, in a module of its own: layers below the package (the providers) read it
without importing the package's top, which reaches the planner."""

__version__ = "0.1.0"
