// What the three dashboards share: the selectors their queries use and the job / instance
// (and optional cluster) variables.
local g = import '../lib/grafana.libsonnet';
local p = import '../lib/promql.libsonnet';

{
  new(cfg):: {
    local buildInfo(extra) = p.fmt('greenops_build_info{%s}', p.matchers([cfg.greenopsSelector] + extra)),
    local cluster = if cfg.clusterLabel == '' then '' else p.fmt('%s=~"$cluster"', cfg.clusterLabel),

    // Raw series of the picked collectors.
    raw: p.matchers([cfg.greenopsSelector, cluster, 'job=~"$job"', 'instance=~"$instance"']),
    // Per-machine and group series of the picked sites and departments (both carry site and
    // department).
    machines: p.matchers([self.raw, 'site=~"$site"', 'department=~"$department"']),
    groups: self.machines,
    // Recorded series: the recording rules keep job (and the cluster label), not instance.
    recorded: p.matchers([cluster, 'job=~"$job"', 'site=~"$site"', 'department=~"$department"']),

    // ${job:queryparam}&... : hands the current picks to a linked dashboard.
    queryParams: std.join('&', ['${datasource:queryparam}']
                               + (if cfg.clusterLabel == '' then [] else ['${cluster:queryparam}'])
                               + ['${job:queryparam}', '${instance:queryparam}', '${__url_time_range}']),

    variables:
      (if cfg.clusterLabel == '' then [] else [
         g.queryVariable('cluster', 'Cluster', p.fmt('label_values(%s, %s)', [buildInfo([]), cfg.clusterLabel]), multi=false, includeAll=false),
       ])
      + [
        g.queryVariable('job', 'Job', p.fmt('label_values(%s, job)', buildInfo([cluster]))),
        g.queryVariable('instance', 'Instance', p.fmt('label_values(%s, instance)', buildInfo([cluster, 'job=~"$job"']))),
      ],

    // Site and department pickers, filled from `metric`'s labels: a group counter on the
    // fleet dashboard (served in both metric modes, and it still has the groups whose machines
    // have all moved or retired), greenops_machine_info on the machine dashboard.
    site(metric='greenops_group_observed_seconds_total'):: g.queryVariable(
      'site', 'Site', p.fmt('label_values(%s{%s}, site)', [metric, self.raw])
    ),
    department(metric='greenops_group_observed_seconds_total'):: g.queryVariable(
      'department', 'Department', p.fmt('label_values(%s{%s, site=~"$site"}, department)', [metric, self.raw])
    ),
  },

  // What the description of every panel reading per-machine series says (the collector
  // serves them only in per-machine mode; the pack's lint looks for "per-machine mode").
  perMachineNote:: 'Needs per-machine mode (metrics.per_machine; `auto` serves per-machine series only up to metrics.per_machine_max machines, 5 000 by default): without it this panel is empty.',
  perMachine(panel):: panel { description: panel.description + ' ' + $.perMachineNote },

  // `sum(x)`, or `sum by (a, b) (x)`.
  sum(labels, expr)::
    if labels == [] then p.fmt('sum(%s)', expr) else p.fmt('sum %s (%s)', [p.by(labels), expr]),
}
