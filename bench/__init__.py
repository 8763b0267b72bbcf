"""`python -m bench`: ROCK's benchmark. Prints a table, writes JSON records."""
