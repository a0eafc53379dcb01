-- A collector's delta read of the fleet (`change_seq > cursor`) walks this index instead of
-- every machine row: a scrape of a quiet 100 000-machine fleet no longer reads the table.
CREATE INDEX machines_change_seq ON machines (change_seq);
