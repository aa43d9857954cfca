"""Shared library of the signal fleet: nothing here knows a particular strategy."""
