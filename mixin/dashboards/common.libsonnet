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
    // Per-machine series of the picked sites and departments.
    machines: p.matchers([self.raw, 'site=~"$site"', 'department=~"$department"']),
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

    site: g.queryVariable('site', 'Site', p.fmt('label_values(greenops_machine_info{%s}, site)', self.raw)),
    department: g.queryVariable(
      'department', 'Department', p.fmt('label_values(greenops_machine_info{%s, site=~"$site"}, department)', self.raw)
    ),
  },

  // `sum(x)`, or `sum by (a, b) (x)`.
  sum(labels, expr)::
    if labels == [] then p.fmt('sum(%s)', expr) else p.fmt('sum %s (%s)', [p.by(labels), expr]),
}
