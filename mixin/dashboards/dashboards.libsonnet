// The Grafana dashboards, keyed by file name. uids are stable contracts (links and bookmarks).
(import 'fleet.libsonnet')
+ (import 'machine.libsonnet')
+ (import 'collector.libsonnet')
