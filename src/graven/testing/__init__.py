"""Test helpers that ship with Graven: the Store contract suite for backend authors."""
