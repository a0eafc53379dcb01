// Small PromQL helpers shared by the rules, alerts and dashboards.
{
  // "4m" for 240, "1h" for 3600, "90s" for 90.
  durationString(seconds)::
    if seconds % 3600 == 0 then '%dh' % (seconds / 3600)
    else if seconds % 60 == 0 then '%dm' % (seconds / 60)
    else '%ds' % seconds,

  // A number as PromQL and people write it (0.05, not 0.050000000000000003).
  num(x):: std.format('%g', x),

  // Label matchers joined with commas, empty ones left out.
  matchers(list):: std.join(', ', std.filter(function(m) m != '', list)),

  // `by (a, b)`.
  by(labels):: 'by (%s)' % std.join(', ', labels),
  on(labels):: 'on (%s)' % std.join(', ', labels),

  // The label sets the pack aggregates by, for a configuration.
  labels(cfg):: {
    cluster: if cfg.clusterLabel == '' then [] else [cfg.clusterLabel],
    // Levels of the recording rules.
    fleet: self.cluster + ['job'],
    site: self.fleet + ['site'],
    department: self.site + ['department'],
    // The labels that identify one per-machine series, whichever collector replica (instance)
    // served it: `max by (machine)` collapses the copies that replicas of one database serve.
    machine: self.department + ['machine_id'],
    // What a per-machine series joins greenops_machine_info on.
    machineKey: self.fleet + ['machine_id'],
  },

  // One series per machine (and per `extra` label, e.g. currency), replicas collapsed.
  perMachine(cfg, expr, extra=[])::
    'max %s (%s)' % [$.by($.labels(cfg).machine + extra), expr],

  // `on (job, machine_id) group_left (hostname) max by (...) (greenops_machine_info{...})`:
  // the right-hand side of a join that adds each machine's hostname (or other info labels).
  infoJoin(cfg, selector, infoLabels=['hostname'])::
    local key = $.labels(cfg).machineKey;
    '%s group_left (%s) max %s (greenops_machine_info{%s})' % [
      $.on(key),
      std.join(', ', infoLabels),
      $.by(key + infoLabels),
      selector,
    ],

  withInfo(cfg, expr, selector, infoLabels=['hostname'])::
    '%s * %s' % [expr, $.infoJoin(cfg, selector, infoLabels)],
}
