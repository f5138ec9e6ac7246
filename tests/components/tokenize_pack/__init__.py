"""Tests of components.tokenize_pack: real Beam runs on small real data."""
