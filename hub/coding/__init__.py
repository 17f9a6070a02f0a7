"""Terminology and code mapping: code systems, value sets, concept maps, units, normalization."""
