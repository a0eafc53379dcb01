// Small PromQL helpers shared by the rules, alerts and dashboards.
{
  // `template % args` for `%s` and `%(name)s` placeholders only (no `%%`, no `%d`), built
  // from std.split: std.format, behind the `%` operator, is written in jsonnet in 0.18 and
  // takes milliseconds per call, which adds up to tens of seconds for this pack.
  fmt(template, args)::
    local parts = std.split(template, '%');
    local named = std.isObject(args);
    local list = if std.isArray(args) then args else [args];
    local piece(i) =
      local part = parts[i];
      if named then
        // part is "(name)s..." (std.findSubstr is as slow as std.format).
        local close = std.length(std.split(part, ')')[0]);
        assert part[0] == '(' && part[close + 1] == 's' : 'fmt supports %(name)s only: ' + template;
        std.toString(args[std.substr(part, 1, close - 1)]) + std.substr(part, close + 2, std.length(part) - close - 2)
      else
        assert std.length(part) > 0 && part[0] == 's' : 'fmt supports %s only: ' + template;
        std.toString(list[i - 1]) + std.substr(part, 1, std.length(part) - 1);
    assert named || std.length(parts) == std.length(list) + 1 : 'fmt: placeholders and arguments differ: ' + template;
    parts[0] + std.join('', [piece(i) for i in std.range(1, std.length(parts) - 1)]),

  // "4m" for 240, "1h" for 3600, "90s" for 90.
  durationString(seconds)::
    if seconds % 3600 == 0 then std.toString(seconds / 3600) + 'h'
    else if seconds % 60 == 0 then std.toString(seconds / 60) + 'm'
    else std.toString(seconds) + 's',

  // A number as PromQL and people write it (0.05, not 0.050000000000000003).
  num(x):: std.format('%g', x),

  // Label matchers joined with commas, empty ones left out.
  matchers(list):: std.join(', ', std.filter(function(m) m != '', list)),

  // `by (a, b)`.
  by(labels):: $.fmt('by (%s)', std.join(', ', labels)),
  on(labels):: $.fmt('on (%s)', std.join(', ', labels)),

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
    // The labels of one group series (greenops_group_*, greenops_machines), whichever replica
    // served it: the department level.
    group: self.department,
  },

  // One series per machine (and per `extra` label, e.g. currency), replicas collapsed.
  perMachine(cfg, expr, extra=[])::
    $.fmt('max %s (%s)', [$.by($.labels(cfg).machine + extra), expr]),

  // One series per group (site, department; and per `extra` label, e.g. currency or status),
  // replicas collapsed. For greenops_group_* and greenops_machines, which the collector serves
  // in both metric modes.
  perGroup(cfg, expr, extra=[])::
    $.fmt('max %s (%s)', [$.by($.labels(cfg).group + extra), expr]),

  // `on (job, machine_id) group_left (hostname) max by (...) (greenops_machine_info{...})`:
  // the right-hand side of a join that adds each machine's hostname (or other info labels).
  infoJoin(cfg, selector, infoLabels=['hostname'])::
    local key = $.labels(cfg).machineKey;
    $.fmt('%s group_left (%s) max %s (greenops_machine_info{%s})', [
      $.on(key),
      std.join(', ', infoLabels),
      $.by(key + infoLabels),
      selector,
    ]),

  withInfo(cfg, expr, selector, infoLabels=['hostname'])::
    $.fmt('%s * %s', [expr, $.infoJoin(cfg, selector, infoLabels)]),
}
