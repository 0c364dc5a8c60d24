"""What good data means: expectation suites beside the tables they guard."""
