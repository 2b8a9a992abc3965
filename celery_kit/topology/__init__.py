"""Topology at run time: priority translation, the publish path, routing checks, worker argv."""
