"""For tests, yours and ours: conformance suites, a mock surrogate, synthetic tables with planted structure."""
