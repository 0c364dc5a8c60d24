"""Market-data sources: one interface, live (yfinance), folder of CSV files, and synthetic."""
