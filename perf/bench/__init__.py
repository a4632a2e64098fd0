"""`perf/compare`: mamori side by side with rspamd and SpamAssassin on the same corpus and run."""
