"""marginwatch: daily loan-to-value monitoring of margin loans secured by pledged shares."""

__version__ = "0.1.0"
