"""Process executions: proc connector, kernel audit exec facts, /proc polling and reading,
CPU use."""
