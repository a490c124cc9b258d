"""Benchmarks: ``make bench`` runs every ``bench/bench_*.py`` module's ``main()``, each printing
its tables. Speed is measured here, never asserted in tests."""
