"""Tests of the TFX components, one folder per component."""
