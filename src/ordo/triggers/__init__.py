"""What starts and follows executions without a person: the cron scheduler and the
notifier, each run by one leader among the servers sharing a store."""
