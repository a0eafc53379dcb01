-- Raw heartbeats are found by time through a BRIN index (the what-if rollup's catch-up every
-- five minutes, retention). A range of pages filled since the last VACUUM is not summarized,
-- and an unsummarized range matches every query: on an insert-only table autovacuum may not
-- run for many hours at a large fleet, so the catch-up would reread all of them each time.
-- With autosummarize, each range is summarized as soon as the next one starts filling.
ALTER INDEX heartbeats_sent_at SET (autosummarize = on);
