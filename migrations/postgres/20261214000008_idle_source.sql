-- The idle source an agent last reported (`x11-screensaver`, `logind`, … or `none`), shown
-- with the machine so an operator can see why its idle time is coarse or unknown. NULL: the
-- agent did not say (agents before this field).
ALTER TABLE machines ADD COLUMN last_idle_source TEXT;
