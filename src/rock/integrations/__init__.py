"""Where ROCK plugs into other tools: ``harbor`` (a Harbor environment on ROCK's SDK)."""
