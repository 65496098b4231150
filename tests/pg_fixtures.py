"""PostgreSQL for the tests: a real server from the machine's binaries (initdb + pg_ctl)."""
