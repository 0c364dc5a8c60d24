"""`python -m marginwatch` runs the command line."""

from marginwatch.cli import main

main()
